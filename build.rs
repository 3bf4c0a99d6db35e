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
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    let mut features = vec!["tract"];
    for (env, name) in [
        ("CARGO_FEATURE_ONNXRUNTIME", "onnxruntime"),
        ("CARGO_FEATURE_CUDA", "cuda"),
        ("CARGO_FEATURE_V4L2", "v4l2"),
        ("CARGO_FEATURE_GSTREAMER", "gstreamer"),
        ("CARGO_FEATURE_ROS2", "ros2"),
    ] {
        if std::env::var_os(env).is_some() {
            features.push(name);
        }
    }
    println!("cargo:rustc-env=FER_EDGE_COMMIT={commit}");
    println!("cargo:rustc-env=FER_EDGE_TARGET={target}");
    println!("cargo:rustc-env=FER_EDGE_FEATURES={}", features.join(", "));
    // A new commit or checkout changes HEAD or the branch ref it points at.
    // (Not .git/index: every `git status` touches it, which would rebuild.)
    let mut watch = vec![".git/HEAD".to_string(), ".git/packed-refs".to_string()];
    if let Ok(head) = std::fs::read_to_string(".git/HEAD") {
        if let Some(r) = head.trim().strip_prefix("ref: ") {
            watch.push(format!(".git/{r}"));
        }
    }
    for f in watch {
        if std::path::Path::new(&f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
