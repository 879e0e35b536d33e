//! The GitHub side: runner I/O (outputs, summary, masks, groups, annotations).

pub mod runner;
