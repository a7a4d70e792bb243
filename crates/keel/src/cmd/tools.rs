use anyhow::Result;
use clap::Subcommand;
use std::process::ExitCode;
use variant::Project;

#[derive(Debug, Subcommand)]
pub enum ToolsCommand {
    /// Make sure the pinned PyPI Portage venv exists under build/tools; print its path
    PortageVenv,
}

impl ToolsCommand {
    pub fn run(self, project: &Project) -> Result<ExitCode> {
        match self {
            ToolsCommand::PortageVenv => {
                let dir = portage::venv::ensure(&pipeline::Layout::build_dir(&project.root))?;
                println!("{}", dir.display());
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
