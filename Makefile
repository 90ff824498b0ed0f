# Lifeboat. `make help` lists the targets.

GO      ?= go
BIN     := bin
GOFLAGS ?=
export GOFLAGS

# Every package but the end-to-end tests, which run on their own after.
PKGS = $$($(GO) list ./... | grep -v '/tests$$')

.PHONY: help deps build ramdisk test unit e2e soak lint fuzz bench demo qemu clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## install what tests, benchmarks and the demo need (apt-get, go mod download)
	@scripts/deps.sh

build: ## build the commands into bin/
	$(GO) build -o $(BIN)/ ./cmds/...

ramdisk: ## recovery ramdisk for BOARD [qemu-x86_64] (ROOT=root.json to bake in) into out/BOARD/; fails past its budget
	$(GO) run ./initramfs/cmd/mkramdisk -board boards/$(or $(BOARD),qemu-x86_64) \
		-o out/$(or $(BOARD),qemu-x86_64)/ramdisk.cpio.xz $(if $(ROOT),-root $(ROOT))

test: deps lint ## the whole test suite: lint, unit and VM tests (race detector, store on SQLite and PostgreSQL), end-to-end interop
	pg=$$(scripts/postgres.sh) && LIFEBOAT_TEST_POSTGRES=$$pg $(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(GO) test -count=1 -timeout 45m ./tests/...

unit: ## unit tests only: no root, no real peers, no VM (VM tests skip)
	$(GO) test -short -count=1 $(PKGS)

e2e: deps ## end-to-end interop tests against the real casync
	$(GO) test -count=1 -v -timeout 45m ./tests/...

soak: deps ## the in-place power-cut test alone, with CUTS power cuts [300]; LIFEBOAT_CUT_SEED=N replays the cut times
	LIFEBOAT_CUTS=$(or $(CUTS),300) $(GO) test -count=1 -v -timeout 0 -run '^TestRecoveryInPlacePowerCut$$' ./tests/

lint: ## gofmt, go vet, go mod tidy check
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff

fuzz: ## run every fuzz target of every package for FUZZTIME (default 30s) each
	@for pkg in $(PKGS); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz: $$pkg $$t"; \
			$(GO) test $$pkg -run XXX -fuzz "^$$t$$" -fuzztime $${FUZZTIME:-30s} -parallel 1 || exit 1; \
		done; \
	done

bench: deps build ## Go benchmarks; make/extract against casync's; verifying a 2 GiB release; binary-size cost; a recovery update in QEMU; the fleet server under load (SERVER_DEVICES)
	$(GO) test -run XXX -bench . -benchtime 5x ./pkg/chunk/ ./pkg/verity/
	scripts/bench.sh
	scripts/bench-release.sh
	scripts/bench-server.sh
	$(GO) run ./demo/cmd/rundemo -q -out out/bench-demo

demo: deps ## build the ramdisk and two releases, serve them, boot a QEMU device on v1 that updates itself to v2
	$(GO) run ./demo/cmd/rundemo -board boards/$(or $(BOARD),qemu-x86_64) -out out/demo

qemu: ## run BOARD [qemu-x86_64] with LAYOUT [ab] in QEMU, console here (Ctrl-A x quits); RUNBOARD='-repo URL -tpm ...'
	$(GO) run ./qemu/cmd/runboard -board boards/$(or $(BOARD),qemu-x86_64) -layout $(or $(LAYOUT),ab) $(RUNBOARD)

clean: ## remove build output
	rm -rf $(BIN) out
