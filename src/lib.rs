//! meshcall
