//! Build-time provenance for `fer-edge --version`: the git commit, the
//! target triple and the enabled features (engines, camera), so a binary
//! found on a device says what it is.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| o.status.success() && !o.stdout.is_empty());
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    let mut features = vec!["tract"];
    for (env, name) in [
        ("CARGO_FEATURE_ONNXRUNTIME", "onnxruntime"),
        ("CARGO_FEATURE_CUDA", "cuda"),
        ("CARGO_FEATURE_V4L2", "v4l2"),
    ] {
        if std::env::var_os(env).is_some() {
            features.push(name);
        }
    }
    println!(
        "cargo:rustc-env=FER_EDGE_COMMIT={commit}{}",
        if dirty { "-modified" } else { "" }
    );
    println!("cargo:rustc-env=FER_EDGE_TARGET={target}");
    println!("cargo:rustc-env=FER_EDGE_FEATURES={}", features.join(", "));
    // A new commit or checkout changes HEAD or the ref it points at.
    for f in [".git/HEAD", ".git/index", ".git/refs/heads"] {
        if std::path::Path::new(f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
