# Shared by scripts/up, scripts/test and scripts/image: make .venv with Python >= 3.11 and install livelearn into it
# from the lock files (requirements/, refreshed by scripts/lock): every distribution at its pinned version and checked
# against its sha256, so a new release of a dependency cannot change what a fresh clone runs.
#   source scripts/_venv.sh up    # the runtime and the embedded servers (requirements/up.txt)
#   source scripts/_venv.sh dev   # that and the test tools (requirements/dev.txt)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${LIVELEARN_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "livelearn needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2; exit 2; }
lockset="$1"
case "$lockset" in
  up|dev) ;;
  *) echo "_venv.sh: unknown lock set '$lockset' (up or dev)" >&2; exit 2 ;;
esac
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
stamp="$venv/.livelearn-installed"
# the stamp names the lock set and the hashes of the files installed from, so any change to them reinstalls
want="$lockset $(cat "$root/requirements/$lockset.txt" "$root/requirements/build.txt" "$root/pyproject.toml" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  pip=("$venv/bin/python" -m pip --disable-pip-version-check)
  # a dev venv keeps the test tools when scripts/up runs in it: the up set is a subset of dev
  if [ "$lockset" = up ] && [ -f "$stamp" ] && [ "$(cut -d' ' -f1 "$stamp")" = dev ]; then
    lockset=dev want="dev $(cat "$root/requirements/dev.txt" "$root/requirements/build.txt" "$root/pyproject.toml" | sha256sum | cut -c1-16)"
  fi
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "installing livelearn and its locked dependencies (requirements/$lockset.txt) into $venv" >&2
    "${pip[@]}" install --quiet --require-hashes --only-binary=:all: -r "$root/requirements/build.txt" -r "$root/requirements/$lockset.txt"
    # livelearn itself, editable, with nothing resolved again: its dependencies are the ones just installed
    "${pip[@]}" install --quiet --no-deps --no-build-isolation -e "$root"
    echo "$want" > "$stamp"
  fi
fi
