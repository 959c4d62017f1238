"""Messages the studio builds on the server (refusals, tokenize report, estimate, presets, A/B note,
lyric findings), English and Chinese; merged into `studio.i18n.T`."""
from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    # ---- refusals (studio.feedback.UserError) ----------------------------------------------------
    "no_run_picked": ("No run selected: pick one in the run list.", "未选择运行：请在运行列表中选择一个。"),
    "need_base": ("Give a checkpoint folder or a Hub repo id for the base model.",
                  "请为基础模型填写权重目录或 Hub 仓库 ID。"),
    "not_a_run": ("{run} is not a run of this workspace.", "{run} 不是此工作目录中的运行。"),
    "not_a_ckpt": ("{name} is not a checkpoint of this workspace.", "{name} 不是此工作目录中的检查点。"),
    "ckpt_no_run": ("{name} is not a checkpoint of a run in this workspace (no config.yaml in its run folder).",
                    "{name} 不属于此工作目录中的任何运行（其运行目录中没有 config.yaml）。"),
    "ckpt_refused": ("Checkpoint {name} is refused: {problems}", "检查点 {name} 被拒绝：{problems}"),
    "need_repo": ("Give a repository id such as your-name/my-songgen-lora.",
                  "请填写仓库 ID，例如 your-name/my-songgen-lora。"),
    "merge_first": ("Merge first: no export at {path} (press Merge with strength {strength}).",
                    "请先合并：{path} 下没有导出结果（以强度 {strength} 点击“合并”）。"),
    "bad_strengths": ("Strengths: numbers separated by commas, e.g. 0, 0.5, 1.0",
                      "强度列表：用逗号分隔的数字，例如 0, 0.5, 1.0"),
    "bad_settings": ("Some settings are not valid:", "部分设置无效："),
    # one line per invalid setting ({field} is the field's label; core.config.ConfigError.details)
    "ve_greater_than": ("{field} must be greater than {gt} (now {input}).", "{field} 必须大于 {gt}（当前为 {input}）。"),
    "ve_greater_than_equal": ("{field} must be at least {ge} (now {input}).", "{field} 不能小于 {ge}（当前为 {input}）。"),
    "ve_less_than": ("{field} must be less than {lt} (now {input}).", "{field} 必须小于 {lt}（当前为 {input}）。"),
    "ve_less_than_equal": ("{field} must be at most {le} (now {input}).", "{field} 不能大于 {le}（当前为 {input}）。"),
    "ve_literal_error": ("{field}: {input} is not accepted; choose one of {expected}.",
                         "{field}：不接受 {input}；可选值：{expected}。"),
    "ve_number": ("{field} must be a number (now {input}).", "{field} 必须是数字（当前为 {input}）。"),
    "ve_bool": ("{field} must be on or off (now {input}).", "{field} 必须是开或关（当前为 {input}）。"),
    "ve_finite": ("{field} must be a finite number (now {input}).", "{field} 必须是有限的数字（当前为 {input}）。"),
    "ve_other": ("{field} = {input}: {msg}", "{field} = {input}：{msg}"),
    # ---- tokenize tab -------------------------------------------------------------------------------
    "plan_cached": ("reused from the cache: {n}", "从缓存复用：{n}"),
    "plan_encode": ("to encode: {n}", "需要编码：{n}"),
    "plan_rejected": ("rejected: {n}", "已拒绝：{n}"),
    "plan_sep": ("separation: {sep}", "分离方式：{sep}"),
    "sum_none": ("**No dataset was written** (every song was rejected).", "**没有写出数据集**（所有歌曲都被拒绝）。"),
    "sum_line": ("encoded **{enc}**, reused from cache **{cached}** · train {train} / validation {val} · codec "
                 "`{codec}`{demo} · separation: {sep} · {secs} s",
                 "新编码 **{enc}**，从缓存复用 **{cached}** · 训练 {train} / 验证 {val} · 编解码器 `{codec}`{demo} · "
                 "分离方式：{sep} · {secs} 秒"),
    "sum_context": ("Model context: {tokens} tokens ({secs} s at {rate} Hz) per stream",
                    "模型上下文：每路 {tokens} 个 token（{rate} Hz 下 {secs} 秒）"),
    "val_note_one": ("No validation song: with one song everything trains; add a second song to get a validation loss.",
                     "没有验证歌曲：只有一首歌时全部用于训练；再添加一首歌即可得到验证损失。"),
    "val_note_zero": ("No validation song: the validation share is 0.", "没有验证歌曲：验证集比例为 0。"),
    "rep_split": ("split", "划分"), "rep_seconds": ("seconds", "秒"), "rep_cache": ("from cache", "来自缓存"),
    "rep_yes": ("yes", "是"), "rep_encoded": ("encoded", "新编码"),
    "split_train": ("train", "训练"), "split_validation": ("validation", "验证"),
    "bud_song": ("song", "歌曲"), "bud_tokens": ("tokens per stream", "每路 token 数"),
    "bud_context": ("model context", "模型上下文"), "bud_share": ("share of context", "占上下文比例"),
    "bud_rule": ("rule", "规则"), "bud_fits": ("fits", "完整放入"),
    "bud_cropped": ("cropped to {n} (random window per step)", "裁剪到 {n}（每步随机窗口）"),
    "hist_x": ("duration (s)", "时长（秒）"), "hist_y": ("songs", "歌曲数"),
    # ---- estimate (train tab) -----------------------------------------------------------------------
    "est_mem_na": ("Memory estimate unavailable: {err}", "无法估算显存：{err}"),
    "est_mem": ("**GPU memory estimate (one process): {total} GB** = weights {w} + grads/optimizer {g} + activations "
                "{a} + logits {l} GB · trainable {tr} of {n} ({share} %) · {frames} frames ({secs} s) per song",
                "**显存估算（单进程）：{total} GB** = 权重 {w} + 梯度/优化器 {g} + 激活 {a} + logits {l} GB · "
                "可训练参数 {tr} / {n}（{share} %）· 每首歌 {frames} 帧（{secs} 秒）"),
    "est_per_gpu": ("**Per GPU with {dist} on {n} GPUs: {gb} GB**", "**{dist} 在 {n} 张 GPU 上，每张 GPU：{gb} GB**"),
    "est_time_na": ("Time estimate unavailable: {err}", "无法估算时间：{err}"),
    "est_per_step": ("{s} s per step on this machine's {device} ({dtype})", "本机 {device}（{dtype}）上每步 {s} 秒"),
    "est_time_nodata": ("**Time estimate: {per_step}**; prepare the data to get the number of steps.",
                        "**时间估算：{per_step}**；完成数据编码后才能得到总步数。"),
    "est_time": ("**Time estimate: about {total}** for {steps} steps ({per_step}).",
                 "**时间估算：约 {total}**，共 {steps} 步（{per_step}）。"),
    "est_bound": ("upper bound at full-length crops", "按完整长度裁剪估算的上限"),
    "est_measured": ("measured: the median step time of run {run} on this machine ({n} steps)",
                     "实测：本机运行 {run} 的每步中位时间（{n} 步）"),
    # ---- presets (train tab) --------------------------------------------------------------------------
    "preset_help": ("Fills the options below for a goal and a card size; change any of them afterwards.",
                    "按目标和显卡显存填好下面的选项；之后仍可逐项修改。"),
    "preset_quick": ("Quick look (CPU / demo, a minute)", "快速体验（CPU / 演示模型，约一分钟）"),
    "preset_voice24": ("Voice / style LoRA · 24 GB", "人声 / 风格 LoRA · 24 GB"),
    "preset_style48": ("Style LoRA, bigger rank · 48 GB", "风格 LoRA，更大的秩 · 48 GB"),
    "preset_full80": ("Full finetune · 80 GB × N", "全量微调 · 80 GB × N"),
    "preset_gpu": ("{gb} GB · {model} · {label}", "{gb} GB · {model} · {label}"),
    "preset_gpu_8": ("LoRA r8, bf16 base, 60 s windows", "LoRA r8，bf16 基础权重，60 秒窗口"),
    "preset_gpu_12": ("LoRA r16, bf16 base, whole songs", "LoRA r16，bf16 基础权重，整首歌"),
    "preset_gpu_16": ("LoRA r16, bf16 base, whole songs", "LoRA r16，bf16 基础权重，整首歌"),
    "preset_gpu_24": ("LoRA r32, bf16 base, batch 2", "LoRA r32，bf16 基础权重，批大小 2"),
    "preset_gpu_48": ("full fine-tune, Adafactor, batch 2", "全量微调，Adafactor，批大小 2"),
    "preset_gpu_80": ("full fine-tune, Adafactor", "全量微调，Adafactor"),
    # ---- A/B (export tab) -------------------------------------------------------------------------------
    "ab_note": ("Same lyrics, description, prompt and seed ({seed}). Held-out validation loss (lower is better): "
                "**A {a}** · **B {b}**", "歌词、描述、提示音频和种子（{seed}）都相同。留出验证集损失（越低越好）："
                "**A {a}** · **B {b}**"),
    "ab_files": ("Files and manifest: `{dir}`", "文件与清单：`{dir}`"),
    "na": ("n/a", "不可用"), "val_short": ("val", "验证"), "loss_short": ("loss", "损失"),
    "val_na_no_dataset": ("no tokenized dataset was found for this run; tokenize your songs in tab 2",
                          "没有找到此运行的已编码数据集；请在第 2 步中编码歌曲"),
    "val_na_no_val": ("the tokenized dataset has no validation songs; add a second song or raise the validation "
                      "share in tab 2, then tokenize again",
                      "已编码数据集中没有验证歌曲；请再添加一首歌或在第 2 步提高验证集比例，然后重新编码"),
    "val_na_mismatch": ("the tokenized dataset does not fit this model ({why}); tokenize again with this run's "
                        "base model and codec", "已编码数据集与此模型不匹配（{why}）；请用此运行的基础模型和编解码器重新编码"),
    "val_na_other": ("{why}", "{why}"),
    "merge_result": ("`{dir}` ({kind}, {dtype}, {n} keys)", "`{dir}`（{kind}，{dtype}，{n} 个键）"),
    "push_result": ("{url} ({vis}, {n} files)", "{url}（{vis}，{n} 个文件）"),
    "push_dataset_at": ("dataset: {url}", "数据集：{url}"),
    "vis_private": ("private", "私有"), "vis_public": ("public", "公开"),
    "sweep_label": ("{strength} {s} · {val} {v}", "{strength} {s} · {val} {v}"),
    # ---- data tab: findings the studio itself adds ------------------------------------------------------
    "qc_untimed_too_long": ("{name} lasts {dur} s, longer than the model's limit of {max} s, and has no section timing, so "
                            "it cannot be cut into pieces that keep their own lyrics. Give it section timing (an LRC "
                            "file, or the starts in the 1b · Timing tab), or trim it to {max} s and shorten the lyrics",
                            "{name} 长 {dur} 秒，超过模型 {max} 秒的上限，且没有分段时间，无法切成各自带有对应歌词的片段。"
                            "请为它提供分段时间（LRC 文件，或在「1b · 分段时间」中设置各段起点），或把它裁剪到 {max} 秒并相应缩短歌词"),
    "qc_split": ("{name} is longer than the model's {max} s: split at section boundaries into {n} training items",
                 "{name} 超过模型的 {max} 秒上限：按段落边界切成 {n} 个训练片段"),
    # ---- data tab: lyric findings (core.lyrics.Note codes) ------------------------------------------------
    "ly_too_long": ("the lyrics are long (about {est} tokens); the model reads at most {budget}, the rest is cut off",
                    "歌词很长（约 {est} 个 token）；模型最多读取 {budget} 个，其余会被截断"),
    "ly_empty_part": ("section {n}: an empty part between ';' was removed", "第 {n} 段：删除了两个 ';' 之间的空白部分"),
    "ly_untagged_part": ("section {n}: text after ';' without a section tag became a [verse] section",
                         "第 {n} 段：';' 之后没有段落标签的文字被设为 [verse] 段"),
    "ly_mapped_tag": ("section {n}: {label} was mapped to the official tag {tag}", "第 {n} 段：{label} 已映射为官方标签 {tag}"),
    "ly_section_fixed": ("section {n} ({tag}): {what}", "第 {n} 段（{tag}）：标点与空格已按官方格式修正（{what}）"),
    "ly_inst_text": ("section {n}: text under the instrumental section {tag} was removed (instrumental sections carry "
                     "no text): {text}", "第 {n} 段：纯音乐段落 {tag} 下的文字已删除（纯音乐段落不含歌词）：{text}"),
    "ly_join_style": ("section {n}: joined with {join} like the rest of the song", "第 {n} 段：改用与全曲一致的 {join} 连接"),
    "ly_no_lyrics": ("no lyrics were found; write the sung text under tags such as [verse] and [chorus]",
                     "没有找到歌词；请把演唱的文字写在 [verse]、[chorus] 等标签下"),
    "ly_half_width": ("full-width punctuation and symbols were converted to plain half-width forms",
                      "全角标点和符号已转换为半角"),
    "ly_unknown_tag": ("line {line}: unknown section tag [{label}]; use one of: {tags} (or a common name such as "
                       "Verse, Chorus, Bridge, Intro, Outro, 主歌, 副歌, 前奏)",
                       "第 {line} 行：未知的段落标签 [{label}]；请使用：{tags}（或常见名称，如 Verse、Chorus、Bridge、"
                       "Intro、Outro、主歌、副歌、前奏）"),
    "ly_relabels": ("section names were mapped to official tags: {pairs}", "段落名称已映射为官方标签：{pairs}"),
    "ly_text_before_tag": ("text before the first section tag was put in {n} [verse] section(s)",
                           "第一个段落标签之前的文字被放入 {n} 个 [verse] 段"),
    "ly_no_tags_fixed": ("no section tags were found; each block of lines became a [verse] section ({n} in all) - "
                         "mark choruses with [chorus] for better results",
                         "没有找到段落标签；每个文字块都成为一个 [verse] 段（共 {n} 个）。用 [chorus] 标出副歌效果更好"),
    "ly_no_tags": ("no section tags were given; every block was taken as a verse", "没有给出段落标签；每个文字块都按主歌处理"),
    "ly_empty_repeat": ("an empty {tag} section was taken as a repeat and given the previous {tag} lyrics",
                        "空的 {tag} 段被视为重复，使用上一个 {tag} 的歌词"),
    "ly_empty_removed": ("an empty {tag} section (no lyrics under it) was removed", "删除了空的 {tag} 段（其下没有歌词）"),
    "ly_inst_text_lines": ("text under the instrumental section {tag} was removed (instrumental sections carry no "
                           "text): {text}", "纯音乐段落 {tag} 下的文字已删除（纯音乐段落不含歌词）：{text}"),
    "ly_line_breaks": ("line breaks were replaced: sections joined by {join}, sentences by {sent}",
                       "换行已替换：段落之间用 {join} 连接，句子之间用 {sent}"),
    "ly_instrumental": ("the lyrics have only instrumental sections: the song is learned as accompaniment-only music, "
                        "conditioned as SongGeneration's bgm mode ([Pure-Music] in the description, lyrics '.' for v2 "
                        "models). If it has singing, add the sung words in [verse]/[chorus] sections.",
                        "歌词只有纯音乐段落：这首歌将作为纯伴奏音乐学习（按 SongGeneration 的 bgm 模式，描述中加 [Pure-Music]，"
                        "v2 模型的歌词为 '.'）。如果歌曲有演唱，请在 [verse]/[chorus] 段中加入歌词。"),
    "ly_none_given": ("no lyrics were given; write the sung text under tags such as [verse] and [chorus] (for an "
                      "instrumental song: [intro-short] ; [inst-long] ; [outro-short])",
                      "没有填写歌词；请把演唱的文字写在 [verse]、[chorus] 等标签下（纯音乐歌曲：[intro-short] ; [inst-long] ; "
                      "[outro-short]）"),
    "ly_inner_semicolon": ("section {n}: the ';' inside the text is kept as part of the section before it (as upstream "
                           "reads it); use '.' between sentences and ' ; ' only before a section tag",
                           "第 {n} 段：文字中的 ';' 按上游的读法归入前一段；句子之间请用 '.'，' ; ' 只放在段落标签之前"),
    "plain": ("{text}", "{text}"),
    # ---- timing tab (studio.timing_edit) -----------------------------------------------------------------
    "te_no_sections": ("this song has no sections to time", "这首歌没有可设置时间的段落"),
    "te_missing": ("give a start time for every section (missing: {missing})", "请为每个段落填写开始时间（缺少：{missing}）"),
    "te_past_end": ("{s} s is past the end of the song", "{s} 秒已超过歌曲结尾"),
    "te_no_lyric_sections": ("the lyrics have no sections yet: fix them in the Data tab first",
                             "歌词还没有段落：请先在「数据」中修正"),
    "te_cols": ("| section | start (s) | confidence |", "| 段落 | 开始（秒） | 置信度 |"),
    # ---- data tab: bulk import (studio.state.Workspace.import_files) -------------------------------------
    "imp_not_uploaded": ("{name}: not an uploaded file, skipped", "{name}：不是上传的文件，已跳过"),
    "imp_bad_json": ("{file} line {line}: not valid JSON (one object per line), skipped",
                     "{file} 第 {line} 行：不是有效的 JSON（每行一个对象），已跳过"),
    "imp_no_path": ("{file} line {line}: no 'path' (the audio file name), skipped",
                    "{file} 第 {line} 行：缺少 'path'（音频文件名），已跳过"),
    "imp_not_audio": ("{file} line {line}: {name} is not an audio file ({exts}); skipped",
                      "{file} 第 {line} 行：{name} 不是音频文件（{exts}），已跳过"),
    "imp_text_unreadable": ("{name}: not added because its text file could not be read (see above)",
                            "{name}：未添加，因为它的文本文件无法读取（见上文）"),
    "imp_no_lyrics": ("{name}: no {stem}.txt lyrics uploaded; added with empty lyrics (edit them below)",
                      "{name}：没有上传 {stem}.txt 歌词；已按空歌词添加（可在下方编辑）"),
}
