//! The training-step stage of ccssl: the CCSSL objective on top of FixMatch.
