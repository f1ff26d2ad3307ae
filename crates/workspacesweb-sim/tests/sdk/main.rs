//! The simulator from the outside, in one test binary: its binary, and every API it serves
//! (WorkSpaces Web, STS, Organizations) through the real AWS SDKs, with its faults.

mod accounts;
mod binary;
mod common;
mod credentials;
mod faults;
mod organizations;
