//! Round trips and corrupted-slot cases of the slot codec.
