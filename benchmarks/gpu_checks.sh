#!/usr/bin/env bash
# The GPU checks of docs/performance.md in one go, for a machine with a CUDA GPU and torch installed
# (Kedro and MLflow not needed). Prints every figure; a failing step is reported and the rest still
# run; the exit status counts the failed steps.
# Run from the repository root: bash benchmarks/gpu_checks.sh
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
failed=0
step() {
  echo "== $*"
  "$@" || { echo "== FAILED ($?): $*"; failed=$((failed + 1)); }
}
step python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
step python3 benchmarks/device_check.py --device cuda --images 4096        # every tiny_all method on the GPU
step python3 benchmarks/throughput.py --device cuda --images 50000 --epochs 2 --method ce
step python3 benchmarks/throughput.py --device cuda --images 50000 --epochs 2 --method kd
step python3 benchmarks/throughput.py --device cpu --images 2048 --method ce  # the same machine's CPU
step python3 benchmarks/benchmark_methods.py --device cuda --images 8192    # every benchmark method, real archs
step python3 benchmarks/data_paths.py --images 8192 --workers 4             # reading from disk, cores to spare
step python3 -m pytest -q -p no:cacheprovider tests/learning/test_training_devices.py  # CUDA tests skipped on CPU
exit "$failed"
