fn main() {
    // Only the napi binding needs Node's link arguments; the pure-Rust test build does not.
    if std::env::var_os("CARGO_FEATURE_NAPI").is_some() {
        napi_build::setup();
    }
}
