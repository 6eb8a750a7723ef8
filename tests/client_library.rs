//! tbd
mod fixture;
