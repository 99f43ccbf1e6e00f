//! The endpoint side of the core, everything but call control: the checks
//! every request passes and the dispatch by method (`checks`), digest
//! authentication (`auth`), REGISTER (`register`) and keep-alive OPTIONS to
//! phones and the trunk (`keepalive`).

mod auth;
mod checks;
mod keepalive;
mod register;
mod ws;

use super::*;
pub(in crate::sip::core) use keepalive::{Keepalive, trunk_sources};
