//! placeholder until written
mod fixture;
