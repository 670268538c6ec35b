//! Core's integration tests, in one binary so that a change to core links one test
//! executable, not one per suite: the store and ledger suites on SQLite and
//! PostgreSQL, the journal on both backends, the renderer and chat commands, the
//! provider wire formats against local fakes, the Docker sandbox, how a run journals its deltas, faults inside runs
//! and the limits' store, and property tests of the parsers of outside input.

mod access;
mod concurrent_admissions;
mod fuzz;
mod journal;
mod ledger;
mod ledger_race;
mod limits;
mod login_limits;
mod openai_wire;
mod provider_tools;
mod render;
mod run_deltas;
mod run_faults;
mod sandbox;
mod store;
mod store_access;
mod store_admin;
mod store_bindings;
mod store_identities;
mod store_tools;
mod support;
mod surface_commands;
