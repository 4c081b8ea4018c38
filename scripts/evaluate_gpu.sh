#!/usr/bin/env bash
# The gpu-profile evaluation table on one GPU machine in one go (chapter 5; results/gpu.csv, results/speed_gpu.csv).
#   python -c "from mp_cnn.corpus import load_corpus; load_corpus().save('.dev/corpus/corpus')"
#   scripts/evaluate_gpu.sh .dev/corpus/corpus OUT 480        # then: python scripts/evaluate.py --merge OUT/gpu_*.csv --out results/gpu.csv
# The corpus travels as a Spectra.save file, so the machine needs no data files. GPU inference speed is measured first,
# alone on the machine; then four workers share the GPU (these CNNs leave most of an H100/H200 idle), each running its
# models through the group split, then leave-one-source-out, then the leaky protocol, appending every finished row to
# its own CSV at once (a run stopped at SECONDS keeps what it finished). Training times are therefore those of one
# GPU shared by four jobs. Variables: PROFILE, EPOCHS, DEVICE, SOURCES, W1..W4 (models per worker), PROTOCOLS,
# SKIP_SPEED, PREVIOUS (a CSV of rows already finished, to go on where a stopped run ended).
set -u
CORPUS=$1; OUT=$2; SECONDS_LEFT=${3:-480}
PROFILE=${PROFILE:-gpu}; DEVICE=${DEVICE:-cuda}
W1=${W1:-vgg16_2d}; W2=${W2:-vgg16_1d,lenet_2d}; W3=${W3:-resnet34_1d,resnet34_2d}; W4=${W4:-alexnet_1d,alexnet_2d,lenet_1d}
E="${PYTHON:-python3} scripts/evaluate.py --profile $PROFILE --corpus $CORPUS --device $DEVICE --runs /tmp/mp_cnn_runs ${EPOCHS:+--epochs $EPOCHS}"
[ -n "${SOURCES:-}" ] && E="$E --sources $SOURCES"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$OUT/log.txt" 2>&1
[ -z "${SKIP_SPEED:-}" ] && $E --speed --bs 4096 --models "$W1,$W2,$W3,$W4" --out "$OUT/x.csv" --speed-out speed_gpu.csv >> "$OUT/log.txt" 2>&1
for i in 1 2 3 4; do
    eval "M=\$W$i"
    [ -n "${PREVIOUS:-}" ] && cp "$PREVIOUS" "$OUT/gpu_$i.csv"      # rows a stopped run finished: skipped, not rerun
    timeout "$SECONDS_LEFT" bash -c "for p in ${PROTOCOLS:-group loso leaky}; do $E --models $M --protocols \$p --out $OUT/gpu_$i.csv; done" >> "$OUT/log.txt" 2>&1 &
done
wait
tar czf "$OUT/preds.tgz" -C /tmp/mp_cnn_runs preds 2>> "$OUT/log.txt"
echo "done" >> "$OUT/log.txt"
