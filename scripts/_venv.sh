# Shared by scripts/up and scripts/test: make .venv with Python >= 3.11 and install livelearn into it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${LIVELEARN_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "livelearn needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2; exit 2; }
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
stamp="$venv/.livelearn-installed"
extras="$1"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ] || [ "$(cat "$stamp")" != "$extras" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[$extras]"
  echo "$extras" > "$stamp"
fi
