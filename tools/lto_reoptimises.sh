#!/usr/bin/env bash
# Does thin LTO optimise again a dependency built at opt-level 0? The release profile builds the AWS SDK and the
# Lambda runtime at opt-level 0 for a short first build, and relies on the thin LTO that `cargo lambda build
# --release` adds to the deployed functions. This builds a two-crate program (a loop in the dependency) three ways
# and prints the loop's time for each:
#
#     bash tools/lto_reoptimises.sh
set -euo pipefail
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/dep/src" "$dir/app/src"
cat >"$dir/dep/Cargo.toml" <<'EOF'
[package]
name = "dep"
version = "0.1.0"
edition = "2021"
EOF
cat >"$dir/dep/src/lib.rs" <<'EOF'
pub fn mix(values: &[u64]) -> u64 {
    let mut acc = 0u64;
    for (i, x) in values.iter().enumerate() {
        acc = acc.wrapping_mul(31).wrapping_add(x ^ (i as u64)).rotate_left(3);
    }
    acc
}
EOF
cat >"$dir/app/Cargo.toml" <<'EOF'
[package]
name = "app"
version = "0.1.0"
edition = "2021"
[dependencies]
dep = { path = "../dep" }
EOF
cat >"$dir/app/src/main.rs" <<'EOF'
fn main() {
    let values: Vec<u64> = (0..1_000_000u64).map(|x| x * 2_654_435_761 % 1_000_003).collect();
    let started = std::time::Instant::now();
    let mut sum = 0u64;
    for _ in 0..50 {
        sum = sum.wrapping_add(dep::mix(std::hint::black_box(&values)));
    }
    println!("{:.2} ms a call (checksum {sum})", started.elapsed().as_secs_f64() * 1e3 / 50.0);
}
EOF
run() {
    local label=$1
    shift
    (cd "$dir/app" && cargo build --release --quiet "$@" && printf '%-42s ' "$label" && ./target/release/app)
}
run "dependency at opt-level 0, no LTO:" --config 'profile.release.package.dep.opt-level=0'
run "dependency at opt-level 0, thin LTO:" --config 'profile.release.package.dep.opt-level=0' \
    --config 'profile.release.lto="thin"' --config 'profile.release.codegen-units=1'
run "dependency at opt-level 3, no LTO:"
