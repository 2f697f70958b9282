//! Passes what nginx-sys learned about the nginx it built (or was pointed at)
//! to the module crate as `cfg` values and environment variables.

use std::env;

fn main() {
    for var in [
        "DEP_NGINX_FEATURES_CHECK",
        "DEP_NGINX_FEATURES",
        "DEP_NGINX_OS_CHECK",
        "DEP_NGINX_OS",
        "DEP_NGINX_BUILD_DIR",
        "DEP_NGINX_VERSION_NUMBER",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }

    let feature_values = env::var("DEP_NGINX_FEATURES_CHECK").unwrap_or_else(|_| "any()".into());
    println!("cargo::rustc-check-cfg=cfg(ngx_feature, values({feature_values}))");
    if let Ok(features) = env::var("DEP_NGINX_FEATURES") {
        for feature in features.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            println!("cargo::rustc-cfg=ngx_feature=\"{feature}\"");
        }
    }

    let os_values = env::var("DEP_NGINX_OS_CHECK").unwrap_or_else(|_| "any()".into());
    println!("cargo::rustc-check-cfg=cfg(ngx_os, values({os_values}))");
    if let Ok(os) = env::var("DEP_NGINX_OS") {
        println!("cargo::rustc-cfg=ngx_os=\"{os}\"");
    }

    if let Ok(dir) = env::var("DEP_NGINX_BUILD_DIR") {
        println!("cargo::rustc-env=NGX_AWS_AUTH_NGINX_BUILD_DIR={dir}");
    }
}
