//! Drop mode's verdict on a finding: the evidence that its source is real (`evidence`), who is
//! never blocked (`protect`), the decision and the blocks it writes (`enforce`), which findings may block whom (`findings`), static block
//! lists (`block_lists`) and which lists name a source (`reputation`).

pub mod block_lists;
pub mod enforce;
pub mod evidence;
pub mod findings;
pub mod protect;
pub mod reputation;
