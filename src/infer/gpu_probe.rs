//! What GPU stack is on this machine, asked of the libraries themselves:
//! the TensorRT version (`getInferLibVersion` in libnvinfer) and the GPU's
//! name (the CUDA driver API). Both key the TensorRT engine cache.
//!
//! In: nothing. Out: `Some(value)` or `None` when the library is absent
//! (every machine without an NVIDIA stack, CI included).

use std::ffi::{c_char, c_int};

/// `getInferLibVersion()`: e.g. 100300 for TensorRT 10.3.0, 8601 for 8.6.1.
pub fn tensorrt_version() -> Option<i32> {
    for name in ["libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so"] {
        // SAFETY: TensorRT's C entry point, declared `extern "C" int32_t
        // getInferLibVersion() noexcept` in NvInferRuntimeBase.h.
        let v = unsafe {
            let Ok(lib) = libloading::Library::new(name) else {
                continue;
            };
            let Ok(f) = lib.get::<unsafe extern "C" fn() -> i32>(b"getInferLibVersion\0") else {
                continue;
            };
            f()
        };
        return Some(v);
    }
    None
}

/// The name of CUDA device `ordinal`, from the driver (`libcuda.so.1`).
pub fn gpu_name(ordinal: u32) -> Option<String> {
    type CuInit = unsafe extern "C" fn(u32) -> c_int;
    type CuDeviceGet = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
    type CuDeviceGetName = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
    // SAFETY: the CUDA driver API's C functions with their documented
    // signatures; the name buffer outlives the call and its length is passed.
    unsafe {
        let lib = libloading::Library::new("libcuda.so.1").ok()?;
        let init: libloading::Symbol<CuInit> = lib.get(b"cuInit\0").ok()?;
        let get: libloading::Symbol<CuDeviceGet> = lib.get(b"cuDeviceGet\0").ok()?;
        let name: libloading::Symbol<CuDeviceGetName> = lib.get(b"cuDeviceGetName\0").ok()?;
        if init(0) != 0 {
            return None;
        }
        let mut dev: c_int = 0;
        if get(&mut dev, ordinal as c_int) != 0 {
            return None;
        }
        let mut buf = [0 as c_char; 256];
        if name(buf.as_mut_ptr(), buf.len() as c_int, dev) != 0 {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr(buf.as_ptr())
                .to_string_lossy()
                .into_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probing_a_machine_without_an_nvidia_stack_answers_none_instead_of_failing() {
        // On a GPU machine these are Some; either way the probe must return.
        let trt = tensorrt_version();
        let gpu = gpu_name(0);
        if std::path::Path::new("/dev/nvidiactl").exists() {
            eprintln!("GPU machine: TensorRT {trt:?}, GPU {gpu:?}");
        } else {
            assert_eq!(gpu, None);
        }
    }
}
