//! Experiment logic (work in progress).
