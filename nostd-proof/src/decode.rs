//! seq-decode on static and stack buffers: HF-exact beam search on a step table, no heap.

use seq_decode::{BeamSearch, EarlyStopping, NBest, Processors, StepTable, Workspace};
use seqcore::Result;

/// A 2-step table over 4 tokens.
static TABLE: [f32; 32] = [
    0.1, 1.0, -0.5, 2.0, 0.3, 0.2, 0.1, 0.0, 1.5, -1.0, 0.5, 0.25, 0.0, 0.0, 3.0, -2.0, //
    0.4, 2.5, 0.1, -0.3, 1.0, 1.0, 1.0, 1.0, -1.0, 0.5, 2.0, 0.0, 0.2, 0.1, 0.0, 1.2,
];

/// Runs a two-beam search with EOS 1 on stack buffers; returns the best score.
///
/// # Errors
/// Whatever the decoder returns (nothing, for these inputs).
pub fn beam_search_on_static_buffers() -> Result<f32> {
    let mut model = StepTable::new(&TABLE, 2, 4)?;
    let search = BeamSearch {
        beams: 2,
        max_new_tokens: 2,
        eos: Some(1),
        length_penalty: 1.0,
        early_stopping: EarlyStopping::Never,
        num_return: 2,
        processors: Processors::default(),
    };
    let (mut f, mut u) = ([0f32; 128], [0u32; 128]);
    let (mut tokens, mut lengths, mut scores) = ([0u32; 4], [0usize; 2], [0f32; 2]);
    search.run(
        &mut model,
        &[0],
        Workspace::new(&mut f, &mut u),
        NBest {
            tokens: &mut tokens,
            lengths: &mut lengths,
            scores: &mut scores,
        },
    )?;
    Ok(scores.first().copied().unwrap_or(f32::NAN))
}
