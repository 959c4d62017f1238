"""Songs in, a checked and tokenized `datasets` cache out.

    result = prepare(cfg)                 # or prepare(cfg, items=[{...}, ...]) from the studio
    ds = load_prepared(result.dataset_dir)  # DatasetDict: "train", "validation"

The steps, one module each: `inputs` (upload rows / metadata.jsonl / a folder -> SongInput) ->
`steps` (text check -> audio check -> cache key -> `separate` -> encode, each adding to a
SongReport) -> `prepare` (split, write the DatasetDict and report). `plan()` is `prepare`'s dry run.

Inputs (one of, in this order):
- `items`: a list of dicts or objects with `audio` (or `path`), `lyrics` (or `gt_lyric`),
  `description` (or `descriptions`), optional `idx`, `vocal` / `bgm` stem paths (skip separation),
  `prompt_start_s` (where the 10 s prompt starts) or `chorus_start_s` (first chorus time), `lrc`
  (timed lyrics) and `timing` (section starts saved in the studio: {source, sections: [{tag, start_s}]}).
- `paths.metadata_path`: metadata.jsonl in the seed format {path, gt_lyric, descriptions, idx} (+ the
  optional keys above). A relative `path` is looked up next to the jsonl, in `paths.raw_data_dir`,
  then in the current folder.
- `paths.raw_data_dir`: a folder of audio files; `NAME.txt` holds NAME's lyrics, `NAME.desc.txt`
  its description, `NAME.lrc` its timed lyrics, `NAME.vocal.<ext>` / `NAME.bgm.<ext>` optional stems.

Section timing (core.timing.resolve): a song with timing is cut at section boundaries into items of at
most the model's max_dur, each conditioned on exactly its own sections' lyrics (EOS only on the item
that reaches the end); without timing, a song longer than max_dur is refused with the ways to add it.
Every dataset row is one item: `idx` (its song), `start_s`, `end_s`, `lyrics`, `reaches_end`, `timing`
(lrc | edited | proposed | none) and `sections` (JSON, for crops on section boundaries).

Every input song gets one report entry (status ok | fixed | warning | rejected, with plain
reasons); one bad song never stops the others, and user files are only ever read.

Cache layout under `cfg.prepared_dir()`:
- `.songs/<key>.pt`: one file per song (int16 codes + prompt + QC results), written atomically. The
  key hashes everything that shapes the item: audio and stem bytes, final lyrics and description,
  codec id/version, separation, model timing, prompt settings. Unchanged songs are never encoded
  again; an interrupted run resumes from the songs already written.
- `<hash>/`: the DatasetDict (save_to_disk) + `manifest.jsonl` (seed format) + `report.json`;
  `<hash>` covers the song keys and the split settings.
- `latest.json`, `last-report.json`: the most recent run (also when nothing could be prepared).
"""
from core.data.inputs import SongInput, coerce_items, collect_inputs, load_metadata, read_text_file, scan_folder
from core.data.limits import DataError, ModelLimits, model_limits
from core.data.prepare import (PrepareResult, check_context, format_summary, load_prepared, plan, prepare, split_items,
                               token_budget)
from core.data.separate import SeparationPlan, plan_separation
from core.data.steps import SCHEMA_VERSION, SongReport, extract_prompt, hash_file, process_song

__all__ = ["token_budget", "check_context", "DataError", "ModelLimits", "PrepareResult", "SCHEMA_VERSION", "SeparationPlan", "SongInput", "SongReport",
           "coerce_items", "collect_inputs", "extract_prompt", "format_summary", "hash_file", "load_metadata",
           "load_prepared", "model_limits", "plan", "plan_separation", "prepare", "process_song", "read_text_file",
           "scan_folder", "split_items"]
