//! Job execution (work in progress).
