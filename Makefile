# The two commands a newcomer needs: `make demo` and `make test`. Each creates the virtual
# environment and installs what it needs; downloads and builds are cached in ~/.cache.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

# `make test` runs its own stack (own ports and state) so it never touches a stack you run.
TEST_STACK_ENV := ROBOLAKE_STACK_DIR=$(HOME)/.cache/robolake/test-stack \
	ROBOLAKE_KAFKA_PORT=19092 ROBOLAKE_KAFKA_CONTROLLER_PORT=19093 \
	ROBOLAKE_S3_ENDPOINT=127.0.0.1:19000 ROBOLAKE_MINIO_CONSOLE_PORT=19001 \
	ROBOLAKE_BUS=kafka://127.0.0.1:19092 ROBOLAKE_LAKE=s3://robolake/lake
# Its PostgreSQL (for the catalog tests): given to `infra up` only, so tests that start stacks of
# their own do not start one on this port too.
TEST_POSTGRES_PORT := 15432

.PHONY: demo test clean system-deps test-system-deps

# MuJoCo renders offscreen through EGL (Mesa on the CPU): Debian's libraries, installed once.
EGL_PACKAGES := libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0
system-deps:
	@ldconfig -p | grep -q libEGL_mesa.so.0 && ldconfig -p | grep -q libOpenGL.so.0 || { \
		echo "installing $(EGL_PACKAGES) for offscreen rendering"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(EGL_PACKAGES); }

# The dashboard's test drives a real headless browser: Debian's chromium, for `make test` only;
# and Debian's postgresql for the catalog server's tests.
TEST_PACKAGES := chromium postgresql
test-system-deps: system-deps
	@command -v chromium >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		echo "installing $(TEST_PACKAGES) for the dashboard's browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(TEST_PACKAGES); }

# Packages are installed by uv (from PyPI, into the venv): from its cache in ~/.cache/robolake/uv it
# installs torch and its CUDA libraries in seconds where pip took ~100 s. pip stays the fallback
# (an index configured for pip only, say).
UV_CACHE := $(HOME)/.cache/robolake/uv
DEMO_EXTRAS := -e '.[sim,learner,analysis]'
# $(call INSTALL,REQUIREMENTS,VENV): into VENV (default: the project's venv).
INSTALL = $(BIN)/uv pip install -q --python $(or $(2),$(VENV))/bin/python --cache-dir $(UV_CACHE) $(1) \
	|| $(or $(2),$(VENV))/bin/pip install -q $(1)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip uv

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(call INSTALL,$(DEMO_EXTRAS))
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(call INSTALL,-e '.[dev]')
	touch $@

# LeRobot's own LeRobotDataset loads our exports in a venv of its own (lerobot pins torch and numpy
# apart from the dev extra's): `make test` runs the export's round trip there.
LEROBOT_VENV := .venv-lerobot
$(LEROBOT_VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PYTHON) -m venv $(LEROBOT_VENV)
	$(call INSTALL,-e '.[lerobot]' pytest pytest-timeout,$(LEROBOT_VENV))
	touch $@

# A small experiment, start to report (a second `make demo` finds it finished; `make clean` forgets it).
DEMO_RUN := --experiment demo --skills reach_red lift_red --bootstrap-episodes 30 --iterations 2 \
	--train-steps 1500 --eval-episodes 10 --episodes 6 --tasks 2
demo: system-deps $(VENV)/.demo-installed
	$(BIN)/robolake run $(DEMO_RUN)

# With PYTEST_ARGS (a subset), the LeRobot round trip is left out (and its venv not made).
LEROBOT_TEST := $(if $(PYTEST_ARGS),,$(LEROBOT_VENV)/.installed)
test: test-system-deps $(VENV)/.test-installed $(LEROBOT_TEST)
	@rm -rf $(HOME)/.cache/robolake/test-stack
	@$(TEST_STACK_ENV) ROBOLAKE_POSTGRES_PORT=$(TEST_POSTGRES_PORT) $(BIN)/robolake infra up || { \
		echo "make test: the Kafka + MinIO + PostgreSQL test stack could not start (reason above)" >&2; exit 1; }
	@$(TEST_STACK_ENV) ROBOLAKE_REQUIRE_STACK=1 ROBOLAKE_TEST_POSTGRES=127.0.0.1:$(TEST_POSTGRES_PORT) \
		$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
		$(TEST_STACK_ENV) $(BIN)/robolake infra down; \
		$(if $(LEROBOT_TEST),ROBOLAKE_REQUIRE_LEROBOT=1 $(LEROBOT_VENV)/bin/python -m pytest -q \
			-p no:cacheprovider tests/unit/test_export_lerobot.py -k lerobot_loads || rc=1;) exit $$rc

clean:
	rm -rf $(VENV) $(LEROBOT_VENV) lake report *.egg-info
