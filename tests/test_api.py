"""Every public function and method of mp_cnn documents every parameter (fastcore docments), so `show_doc` and llms.txt show them."""
import dataclasses, importlib, inspect, pkgutil
import mp_cnn
from fastcore.docments import docments

MODULES = [importlib.import_module(f'mp_cnn.{m.name}') for m in pkgutil.iter_modules(mp_cnn.__path__) if not m.name.startswith('_')]



def public_api():
    "(qualified name, function or dataclass) for every public name in each module's `__all__` and every public method of its classes (@patch'd ones included)."
    seen = set()
    for mod in MODULES:   # all imported first: methods patched on from later modules are in place
        for name in getattr(mod, '__all__', []):
            obj = getattr(mod, name)
            if getattr(obj, '__module__', '').split('.')[0] != 'mp_cnn' or id(obj) in seen: continue
            seen.add(id(obj))
            if inspect.isfunction(obj): yield f'{mod.__name__}.{name}', obj
            if not inspect.isclass(obj): continue
            if dataclasses.is_dataclass(obj): yield f'{mod.__name__}.{name}', obj   # its fields
            for k, v in vars(obj).items():
                v = v.__func__ if isinstance(v, (staticmethod, classmethod)) else v.fget if isinstance(v, property) else v
                if not inspect.isfunction(v) or (k.startswith('_') and k not in ('__init__', '__call__')): continue
                if v.__code__.co_filename.startswith('<'): continue    # written by @dataclass
                yield f'{mod.__name__}.{name}.{k}', v


def undocumented(f):
    "Names of `f`'s parameters (self, cls, *args and **kwargs aside) that have no docment."
    d = docments(f, full=True, returns=False)
    return [k for k, v in d.items() if k not in ('self', 'cls') and v.docment is None
            and v.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]


def test_the_check_can_fail():
    def f(a, # documented
          b): pass
    assert undocumented(f) == ['b']


def test_every_public_parameter_has_a_docment():
    api = dict(public_api())
    assert len(api) > 200 and 'mp_cnn.spectra.Spectra.save' in api and 'mp_cnn.augment.broaden' in api
    missing = {q: m for q, f in api.items() if (m := undocumented(f))}
    assert not missing, 'parameters without a docment (`def f(x, # what x is`):\n' + '\n'.join(f'{q}: {m}' for q, m in missing.items())
