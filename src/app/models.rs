//! `stylestream models`: list the local models, fetch one from the ONNX model zoo, convert
//! ONNX to safetensors.

use super::AppError;

/// `stylestream models ...`.
pub fn models(cmd: &crate::cli::ModelsCommand) -> Result<(), AppError> {
    use crate::cli::ModelsCommand;
    use crate::model::zoo;
    match cmd {
        ModelsCommand::List { dir, json } => {
            let dir = zoo::models_dir(dir.as_deref())?;
            let items = zoo::list(&dir)?;
            let mut stdout = std::io::stdout();
            if *json {
                for m in &items {
                    println!("{}", serde_json::to_string(m).unwrap_or_default());
                }
            } else {
                let _ = zoo::print_list(&dir, &items, &mut stdout);
            }
            Ok(())
        }
        ModelsCommand::Fetch { name, dir, url, sha256, quiet } => {
            let dir = zoo::models_dir(dir.as_deref())?;
            let (url, pin) = match (url, zoo::zoo_model(name)) {
                (Some(u), _) => (u.clone(), None),
                (None, Some(m)) => (m.url.to_string(), m.sha256),
                (None, None) => {
                    return Err(zoo::ZooError::UnknownModel {
                        name: name.clone(),
                        known: zoo::ZOO.map(|m| m.name).join(", "),
                    }
                    .into())
                }
            };
            let sha = match (sha256, pin) {
                (Some(h), _) => zoo::fetch::parse_sha256(h)?,
                (None, Some(p)) => p.to_string(),
                (None, None) => return Err(zoo::ZooError::NoPin { name: name.clone() }.into()),
            };
            let file = name.strip_suffix(".onnx").unwrap_or(name);
            let dest = zoo::fetch::destination(&dir, file);
            let progress = !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
            let bytes = zoo::fetch::download(&url, &sha, &dest, progress)?;
            if !quiet {
                eprintln!("fetched {} ({bytes} bytes, sha256 {sha})", dest.display());
            }
            Ok(())
        }
        ModelsCommand::Convert { input, output, description } => {
            let toml = description.clone().unwrap_or_else(|| output.with_extension("toml"));
            let desc = zoo::convert::convert(input, output, &toml)?;
            eprintln!(
                "wrote {} and {} ({} layers); use: stylestream stylize IN -o OUT --model {} --network {}",
                output.display(),
                toml.display(),
                desc.layers.len(),
                output.display(),
                toml.display()
            );
            Ok(())
        }
    }
}
