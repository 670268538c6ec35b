//! Link flags for the release binary (issue 12: the shipped binary's size).
//!
//! Only builds whose profile inherits from `release` get them, so debug builds and
//! their tests link exactly as before; and only for `x86_64-unknown-linux-gnu` with
//! the toolchain's default linker (rust-lld behind `cc`), which understands both:
//!
//! - `--icf=all` folds functions whose machine code is identical: the same generic
//!   code instantiated in several crates. A backtrace through a folded function names
//!   one of the identical copies. (`--icf=safe` folds nothing here: rustc emits no
//!   address-significance tables.)
//! - `-z pack-relative-relocs` stores the position-independent binary's relative
//!   relocations as a packed bitmap (DT_RELR) instead of 24 bytes each in
//!   `.rela.dyn`. The dynamic loader needs glibc 2.36 or newer (Debian 12, the image's
//!   base); the linker records that requirement, so an older glibc refuses to start
//!   the binary with a clear error instead of misloading it.
//!
//! A build that picks another linker (`target.<triple>.linker`, `-C linker-features`,
//! `-C link-self-contained`, `-fuse-ld` in RUSTFLAGS) gets neither flag.

#![allow(
    clippy::print_stdout,
    reason = "a build script speaks to cargo on stdout"
)]

use std::env;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let release = env::var("PROFILE").as_deref() == Ok("release");
    let default_linker = env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu")
        && env::var_os("RUSTC_LINKER").is_none()
        && !env::var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|flags| {
            ["linker", "link-self-contained", "fuse-ld"]
                .iter()
                .any(|flag| flags.contains(flag))
        });
    if release && default_linker {
        println!("cargo::rustc-link-arg-bins=-Wl,--icf=all");
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
