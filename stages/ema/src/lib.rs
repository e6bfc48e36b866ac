//! The EMA, evaluation and checkpoint stage of ccssl.
