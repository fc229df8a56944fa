//! `stylestream submit`: publishes one job event, checked as the service will check it.

use super::serve::ServiceError;
use super::AppError;

/// `stylestream submit`: publishes one job event with publisher confirms.
pub fn submit(args: &crate::cli::SubmitArgs) -> Result<(), AppError> {
    let config = super::broker_config(args.config.as_deref())?;
    let url = std::env::var(&config.url_env).unwrap_or_else(|_| config.url.clone());
    let mut event = serde_json::json!({ "schema": crate::ingress::event::SCHEMA, "style": args.style });
    let obj = event.as_object_mut().ok_or_else(|| AppError::Usage("internal: event".into()))?;
    match (&args.input, &args.input_prefix) {
        (Some(i), None) => obj.insert("input".into(), i.clone().into()),
        (None, Some(p)) => obj.insert("input_prefix".into(), p.clone().into()),
        _ => return Err(AppError::Usage("give --input KEY or --input-prefix PREFIX".into())),
    };
    match (&args.output, &args.output_prefix, &args.output_frames_prefix) {
        (Some(o), None, None) => obj.insert("output".into(), o.clone().into()),
        (None, Some(p), None) => obj.insert("output_prefix".into(), p.clone().into()),
        (None, None, Some(p)) => obj.insert("output_frames_prefix".into(), p.clone().into()),
        _ => {
            return Err(AppError::Usage(
                "give --output KEY, --output-prefix PREFIX or --output-frames-prefix PREFIX".into(),
            ))
        }
    };
    if let Some(q) = args.jpeg_quality {
        obj.insert("jpeg_quality".into(), q.into());
    }
    if let Some(id) = &args.id {
        obj.insert("id".into(), id.clone().into());
    }
    if let Some(fps) = args.fps {
        obj.insert("fps".into(), fps.into());
    }
    let body = serde_json::to_vec(&event).map_err(|e| AppError::Usage(e.to_string()))?;
    // Checked as the service will check it.
    crate::ingress::event::parse(&body, config.max_message_bytes, &[], &crate::ingress::event::Source::default())
        .map_err(|e| AppError::Usage(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError::Usage(e.to_string()))?;
    rt.block_on(crate::ingress::broker::submit(&url, &config, &body)).map_err(ServiceError::from)?;
    println!("{}", String::from_utf8_lossy(&body));
    Ok(())
}
