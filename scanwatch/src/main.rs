//! `scanwatch`: detects network scans in the kernel with XDP, writes alerts as JSON Lines and
//! exports Prometheus metrics. The command line is defined in `scanwatch::cli`.

use clap::Parser as _;
use scanwatch::{
    cli::{Cli, Command, RunArgs},
    config::{Config, FileConfig, Overrides},
    kernel::pins::Instance,
    runtime::{agent, ctl},
};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = Instance::new(cli.instance.as_deref()).and_then(|instance| match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Run(args) => run(args, &instance),
        Command::Block {
            target,
            ttl,
            reason,
        } => ctl::block(&instance, &target, ttl, reason.as_deref()),
        Command::Unblock { target } => ctl::unblock(&instance, &target),
        Command::List { json, all } => ctl::list(&instance, json, all),
        Command::Status { json } => ctl::status(&instance, json),
        Command::Replay(args) => scanwatch::runtime::replay::run(&args),
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scanwatch: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    let parsed = FileConfig::read(file)?;
    let config = Config::build(Some(&parsed), &Overrides::default())?;
    for list in &config.block_lists {
        let nets = ctl::check_block_list(&list.path)?;
        let role = if list.block {
            "block"
        } else {
            "enrichment only"
        };
        println!(
            "{} ({}, {role}): {} entries",
            list.path.display(),
            list.name,
            nets.len()
        );
    }
    println!("{}: OK\n{config:#?}", file.display());
    Ok(())
}

fn run(args: RunArgs, instance: &Instance) -> anyhow::Result<()> {
    let (force, reset_state) = (args.force, args.reset_state);
    let source = args.config_source();
    let config = source.load()?;
    env_logger::Builder::new()
        .filter_level(config.log_level)
        .parse_default_env()
        .target(env_logger::Target::Stderr)
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(agent::run(source, instance, force, reset_state))
}
