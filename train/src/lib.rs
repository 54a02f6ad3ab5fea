//! Built-in trainers (work in progress).
