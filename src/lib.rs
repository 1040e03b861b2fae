//! The parts of the `vodkms` binary worth reaching from outside it: the
//! configuration file parser, which the fuzz targets drive (`fuzz-checks`).

pub mod config;
