//! Simulator of the WorkSpaces Web API (TODO).
