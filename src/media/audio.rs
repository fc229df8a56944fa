//! Audio re-encoding, for the one case where a stream cannot be copied: the output container
//! cannot hold its codec (AAC into WebM, say). Decodes, resamples to what the container's
//! default audio encoder takes (Opus for WebM), and re-encodes in that encoder's frame size.
//! Written against the libav* C API, which ffmpeg-next does not wrap for audio FIFOs.

use std::ptr;

use ffmpeg::ffi;
use ffmpeg::packet::{Mut, Ref};
use ffmpeg_next as ffmpeg;

/// Bit rate of re-encoded audio.
const BIT_RATE: i64 = 128_000;

pub struct AudioTranscoder {
    dec: *mut ffi::AVCodecContext,
    enc: *mut ffi::AVCodecContext,
    swr: *mut ffi::SwrContext,
    fifo: *mut ffi::AVAudioFifo,
    frame_size: i32,
    /// Samples sent to the encoder so far (its pts, in 1/sample_rate).
    next_pts: i64,
    /// The encoder's name, for the message that says audio is re-encoded.
    pub encoder_name: String,
}

// SAFETY: the contexts are owned by this value and used by one thread at a time.
unsafe impl Send for AudioTranscoder {}

fn err(what: &str, code: i32) -> String {
    format!("{what}: {}", ffmpeg::Error::from(code))
}

impl AudioTranscoder {
    /// A transcoder from `params` (the source stream) to the default audio codec of `ofmt`.
    /// `global_header`: the container wants codec headers out of band.
    ///
    /// # Safety
    /// `params` and `ofmt` must be valid for the duration of the call.
    pub unsafe fn new(
        params: *const ffi::AVCodecParameters,
        ofmt: *const ffi::AVOutputFormat,
        global_header: bool,
    ) -> Result<Self, String> {
        let mut t = Self {
            dec: ptr::null_mut(),
            enc: ptr::null_mut(),
            swr: ptr::null_mut(),
            fifo: ptr::null_mut(),
            frame_size: 1024,
            next_pts: 0,
            encoder_name: String::new(),
        };
        // Decoder.
        let dcodec = ffi::avcodec_find_decoder((*params).codec_id);
        if dcodec.is_null() {
            return Err("no decoder for the source audio".into());
        }
        t.dec = ffi::avcodec_alloc_context3(dcodec);
        let r = ffi::avcodec_parameters_to_context(t.dec, params);
        if r < 0 {
            return Err(err("audio decoder parameters", r));
        }
        let r = ffi::avcodec_open2(t.dec, dcodec, ptr::null_mut());
        if r < 0 {
            return Err(err("opening the audio decoder", r));
        }
        // Encoder: the container's default audio codec; for Opus the libopus encoder (the
        // native one is experimental).
        let id = (*ofmt).audio_codec;
        let ecodec = if id == ffi::AVCodecID::AV_CODEC_ID_OPUS {
            let name = c"libopus";
            let c = ffi::avcodec_find_encoder_by_name(name.as_ptr());
            if c.is_null() {
                ffi::avcodec_find_encoder(id)
            } else {
                c
            }
        } else {
            ffi::avcodec_find_encoder(id)
        };
        if ecodec.is_null() || id == ffi::AVCodecID::AV_CODEC_ID_NONE {
            return Err("the container has no audio encoder available".into());
        }
        t.encoder_name = std::ffi::CStr::from_ptr((*ecodec).name).to_string_lossy().into_owned();
        t.enc = ffi::avcodec_alloc_context3(ecodec);
        let in_rate = (*t.dec).sample_rate;
        let rate = pick_rate((*ecodec).supported_samplerates, in_rate);
        let fmt = if (*ecodec).sample_fmts.is_null() {
            ffi::AVSampleFormat::AV_SAMPLE_FMT_FLTP
        } else {
            *(*ecodec).sample_fmts
        };
        let channels = (*t.dec).ch_layout.nb_channels.clamp(1, 2);
        ffi::av_channel_layout_default(&mut (*t.enc).ch_layout, channels);
        (*t.enc).sample_rate = rate;
        (*t.enc).sample_fmt = fmt;
        (*t.enc).bit_rate = BIT_RATE;
        (*t.enc).time_base = ffi::AVRational { num: 1, den: rate };
        if global_header {
            (*t.enc).flags |= ffi::AV_CODEC_FLAG_GLOBAL_HEADER as i32;
        }
        let r = ffi::avcodec_open2(t.enc, ecodec, ptr::null_mut());
        if r < 0 {
            return Err(err("opening the audio encoder", r));
        }
        if (*t.enc).frame_size > 0 {
            t.frame_size = (*t.enc).frame_size;
        }
        // Resampler and FIFO.
        let r = ffi::swr_alloc_set_opts2(
            &mut t.swr,
            &mut (*t.enc).ch_layout,
            fmt,
            rate,
            &mut (*t.dec).ch_layout,
            (*t.dec).sample_fmt,
            in_rate,
            0,
            ptr::null_mut(),
        );
        if r < 0 || ffi::swr_init(t.swr) < 0 {
            return Err("cannot set up the audio resampler".into());
        }
        t.fifo = ffi::av_audio_fifo_alloc(fmt, channels, t.frame_size.max(1));
        if t.fifo.is_null() {
            return Err("out of memory for the audio FIFO".into());
        }
        Ok(t)
    }

    /// Codec parameters for the output stream.
    ///
    /// # Safety
    /// `params` must be valid.
    pub unsafe fn fill_parameters(&self, params: *mut ffi::AVCodecParameters) {
        ffi::avcodec_parameters_from_context(params, self.enc);
    }

    /// The encoder's time base (1 / sample rate).
    pub fn time_base(&self) -> ffmpeg::Rational {
        // SAFETY: enc is a valid, opened context.
        unsafe { (*self.enc).time_base.into() }
    }

    /// Feeds one source packet (None: end of stream) and returns the encoded packets, with
    /// timestamps in `time_base()`.
    pub fn push(&mut self, packet: Option<&ffmpeg::Packet>) -> Result<Vec<ffmpeg::Packet>, String> {
        // SAFETY: all pointers are owned by self and valid; frames are freed before returning.
        unsafe {
            let r = ffi::avcodec_send_packet(self.dec, packet.map_or(ptr::null(), |p| p.as_ptr()));
            if r < 0 && r != ffi::AVERROR_EOF {
                return Err(err("decoding audio", r));
            }
            let mut frame = ffi::av_frame_alloc();
            while ffi::avcodec_receive_frame(self.dec, frame) >= 0 {
                let cap = ffi::swr_get_out_samples(self.swr, (*frame).nb_samples);
                self.resample_into_fifo((*frame).extended_data as *mut *const u8, (*frame).nb_samples, cap)?;
                ffi::av_frame_unref(frame);
            }
            ffi::av_frame_free(&mut frame);
            let end = packet.is_none();
            if end {
                // Drain the resampler's own delay.
                let cap = ffi::swr_get_out_samples(self.swr, 0);
                if cap > 0 {
                    self.resample_into_fifo(ptr::null_mut(), 0, cap)?;
                }
            }
            let mut out = Vec::new();
            while ffi::av_audio_fifo_size(self.fifo) >= self.frame_size
                || (end && ffi::av_audio_fifo_size(self.fifo) > 0)
            {
                let n = ffi::av_audio_fifo_size(self.fifo).min(self.frame_size);
                let mut f = ffi::av_frame_alloc();
                (*f).nb_samples = n;
                (*f).format = (*self.enc).sample_fmt as i32;
                (*f).sample_rate = (*self.enc).sample_rate;
                ffi::av_channel_layout_copy(&mut (*f).ch_layout, &(*self.enc).ch_layout);
                if ffi::av_frame_get_buffer(f, 0) < 0 {
                    ffi::av_frame_free(&mut f);
                    return Err("out of memory for an audio frame".into());
                }
                ffi::av_audio_fifo_read(self.fifo, (*f).extended_data as *mut *mut LibcVoid, n);
                (*f).pts = self.next_pts;
                self.next_pts += n as i64;
                let r = ffi::avcodec_send_frame(self.enc, f);
                ffi::av_frame_free(&mut f);
                if r < 0 {
                    return Err(err("encoding audio", r));
                }
                self.receive(&mut out)?;
            }
            if end {
                ffi::avcodec_send_frame(self.enc, ptr::null());
                self.receive(&mut out)?;
            }
            Ok(out)
        }
    }

    unsafe fn resample_into_fifo(&mut self, input: *mut *const u8, samples: i32, cap: i32) -> Result<(), String> {
        let channels = (*self.enc).ch_layout.nb_channels;
        let mut buf: *mut *mut u8 = ptr::null_mut();
        let mut linesize = 0;
        let r = ffi::av_samples_alloc_array_and_samples(
            &mut buf,
            &mut linesize,
            channels,
            cap.max(1),
            (*self.enc).sample_fmt,
            0,
        );
        if r < 0 {
            return Err(err("allocating audio samples", r));
        }
        let got = ffi::swr_convert(self.swr, buf, cap, input, samples);
        let result = if got < 0 {
            Err(err("resampling audio", got))
        } else if ffi::av_audio_fifo_write(self.fifo, buf as *mut *mut LibcVoid, got) < got {
            Err("audio FIFO write failed".into())
        } else {
            Ok(())
        };
        ffi::av_freep(buf as *mut LibcVoid);
        ffi::av_freep(&mut buf as *mut *mut *mut u8 as *mut LibcVoid);
        result
    }

    unsafe fn receive(&mut self, out: &mut Vec<ffmpeg::Packet>) -> Result<(), String> {
        loop {
            let mut p = ffmpeg::Packet::empty();
            let r = ffi::avcodec_receive_packet(self.enc, p.as_mut_ptr());
            if r == ffi::AVERROR(ffi::EAGAIN) || r == ffi::AVERROR_EOF {
                return Ok(());
            }
            if r < 0 {
                return Err(err("encoding audio", r));
            }
            out.push(p);
        }
    }
}

type LibcVoid = std::ffi::c_void;

/// The input rate when the encoder takes it, else 48 kHz when it does, else its first rate.
unsafe fn pick_rate(supported: *const i32, input: i32) -> i32 {
    if supported.is_null() {
        return input;
    }
    let mut rates = Vec::new();
    let mut p = supported;
    while *p != 0 {
        rates.push(*p);
        p = p.add(1);
    }
    if rates.contains(&input) {
        input
    } else if rates.contains(&48000) {
        48000
    } else {
        rates.first().copied().unwrap_or(input)
    }
}

impl Drop for AudioTranscoder {
    fn drop(&mut self) {
        // SAFETY: each pointer is either null or owned by self.
        unsafe {
            if !self.fifo.is_null() {
                ffi::av_audio_fifo_free(self.fifo);
            }
            ffi::swr_free(&mut self.swr);
            ffi::avcodec_free_context(&mut self.dec);
            ffi::avcodec_free_context(&mut self.enc);
        }
    }
}
