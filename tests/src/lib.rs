//! End-to-end tests of ccssl: they run the built binaries on real graphs, real shared memory
//! and real files. The tests live in `tests/`; this library holds their shared helpers.
