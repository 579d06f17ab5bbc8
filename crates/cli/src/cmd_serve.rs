//! `stepforge mcp` and `stepforge lsp`: the tool servers (DESIGN §17) over stdin/stdout. The
//! protocols live in `stepforge-servers`; this module only hands them the process's stdio and
//! maps their end to an exit status. Nothing may be printed to stdout here: it is the protocol
//! channel.

use std::path::PathBuf;

use stepforge_servers::{lsp, mcp};

use crate::{Status, output};

#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// Directory that relative task paths, `list_tasks` and the resources are resolved against.
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
    /// Worker threads for tool calls.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
}

#[derive(Debug, clap::Args)]
pub struct LspArgs {
    /// Worker threads for requests.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Accepted for editors that pass it; stdio is the only transport.
    #[arg(long, hide = true)]
    pub stdio: bool,
}

pub fn run_mcp(args: &McpArgs) -> Status {
    let cfg = mcp::McpConfig {
        root: args.root.clone(),
        workers: args.workers.clamp(1, 64),
        ..mcp::McpConfig::default()
    };
    let stdin = std::io::stdin().lock();
    match mcp::serve(stdin, std::io::stdout(), &cfg) {
        Ok(()) => Status::Ok,
        Err(e) => {
            output::error(&format!("mcp: {e}"));
            Status::Usage
        }
    }
}

pub fn run_lsp(args: &LspArgs) -> Status {
    let cfg = lsp::LspConfig {
        workers: args.workers.clamp(1, 64),
    };
    let (conn, io) = lsp::transport::stdio();
    let res = lsp::serve(&conn, &cfg);
    drop(conn);
    let _ = io.join();
    match res {
        Ok(()) => Status::Ok,
        Err(e) => {
            output::error(&format!("lsp: {e}"));
            Status::Usage
        }
    }
}
