//! `stylestream cancel`: asks every running service instance to cancel a job.

use super::serve::ServiceError;
use super::AppError;

/// `stylestream cancel`: publishes a control message that every running instance reads.
pub fn cancel(args: &crate::cli::CancelArgs) -> Result<(), AppError> {
    let config = super::broker_config(args.config.as_deref())?;
    crate::ingress::event::check_id(&args.id).map_err(|e| AppError::Usage(e.to_string()))?;
    let url = std::env::var(&config.url_env).unwrap_or_else(|_| config.url.clone());
    let body =
        serde_json::to_vec(&serde_json::json!({ "schema": crate::ingress::event::CONTROL_SCHEMA, "cancel": args.id }))
            .map_err(|e| AppError::Usage(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError::Usage(e.to_string()))?;
    rt.block_on(crate::ingress::broker::send_control(&url, &config, &body)).map_err(ServiceError::from)?;
    println!("{}", String::from_utf8_lossy(&body));
    Ok(())
}
