//! Tests of the engine and the wire decoding through their public API, kept
//! in the library (not in `tests/`) so that `cargo test --lib` runs them:
//! the mutation runs (`scripts/mutants`) then build one test binary per
//! mutant instead of three.

mod decode_fuzz;
mod lobby_props;
