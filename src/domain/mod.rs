//! Parse-don't-validate domain types and the pure request-to-command logic: no I/O, no HTTP,
//! no storage. Both stores run the same [`plan`] over the facts they fetched, so the rules
//! of what a request changes are written once.

pub mod change;
pub mod delete;
pub mod email;
pub mod events;
pub mod history;
pub mod identifiers;
pub mod ids;
pub mod ledger;
pub mod links;
pub mod plan;
pub mod rate_limit;
pub mod read;
pub mod retention;
pub mod set_status;
pub mod subscription;
pub mod tenant;
pub mod time;
pub mod track;
pub mod validation;
