# Tools the tests and benchmarks need, installed from Debian's packages when
# missing. Source, then: need COMMAND PACKAGE [PACKAGE...]
DEPS_UPDATED=

need() {
  local cmd=$1; shift
  command -v "$cmd" >/dev/null 2>&1 && return
  [ -x "/usr/sbin/$cmd" ] && return
  echo "installing $* from Debian (for $cmd)" >&2
  local sudo=
  [ "$(id -u)" = 0 ] || sudo=sudo
  if [ -z "$DEPS_UPDATED" ]; then $sudo apt-get update -qq; DEPS_UPDATED=1; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# hls.js and playwright-core for the browser tests, as package-lock.json pins them.
need_browser_packages() {
  need node nodejs npm
  need chromium chromium
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}

# The OpenAPI 3 validator the OpenAPI test runs the documents through.
need_openapi_validator() {
  python3 -c 'import openapi_spec_validator' 2>/dev/null && return
  echo "installing openapi-spec-validator from PyPI" >&2
  python3 -m pip install -q --disable-pip-version-check openapi-spec-validator >/dev/null
}

# A virtual environment at VENV with the pins of REQUIREMENTS, made again
# when the pins change.
need_venv() {
  local venv=$1 requirements=$2 stamp
  stamp=$(sha256sum "$requirements" | cut -c1-16)
  if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]; then
    python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null \
      || need_package python3-venv
    echo "installing $requirements into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements" >/dev/null
    echo "$stamp" > "$venv/.stamp"
  fi
}

# The cloud SDKs of tests/sdk/requirements.txt, in target/cloud-sdks. Exports
# VODKMS_SDK_PYTHON, the environment's python, for tests/cloud_doors.rs.
need_cloud_sdks() {
  need_venv target/cloud-sdks tests/sdk/requirements.txt
  VODKMS_SDK_PYTHON=$PWD/target/cloud-sdks/bin/python
  export VODKMS_SDK_PYTHON
}

# Schemathesis (tests/schemathesis/requirements.txt), in target/schemathesis.
# Exports VODKMS_SCHEMATHESIS, its command, for tests/api_conformance.rs.
need_schemathesis() {
  need_venv target/schemathesis tests/schemathesis/requirements.txt
  VODKMS_SCHEMATHESIS=$PWD/target/schemathesis/bin/schemathesis
  export VODKMS_SCHEMATHESIS
}

# A Debian package, installed when missing.
need_package() {
  dpkg -s "$1" >/dev/null 2>&1 && return
  local sudo=
  [ "$(id -u)" = 0 ] || sudo=sudo
  if [ -z "$DEPS_UPDATED" ]; then $sudo apt-get update -qq; DEPS_UPDATED=1; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}
