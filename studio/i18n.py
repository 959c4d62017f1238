"""Every label and help text of the studio, English and Chinese, as one `gr.I18n`.

Static text (labels, help, headings) is passed as ``I18N(key)``: the browser shows it in its own
language (Gradio's front end picks the locale, English otherwise). Messages that carry values
("Added song {idx}.") are built on the server with ``tr(key, lang, **fmt)`` from the same
translations, in the studio's --lang. ``T[key] = (english, chinese)`` is the table both are made from.
"""
from __future__ import annotations

import gradio as gr

from studio.i18n_messages import MESSAGES

LANGS = ("en", "zh")

T: dict[str, tuple[str, str]] = {
    # ---- shell -----------------------------------------------------------------------------
    "title": ("SongGen Studio", "SongGen Studio 歌曲模型微调工作室"),
    "subtitle": ("Finetune Tencent's SongGeneration (LeVo) on your own songs: upload, tokenize, train, listen, publish.",
                 "用你自己的歌曲微调腾讯 SongGeneration (LeVo)：上传、编码、训练、试听、发布。"),
    "banner_demo_model": ("**DEMO model and DEMO codec in use.** They run on any CPU without downloads so you can try "
                          "every step; their audio is not music quality. Pick an official checkpoint or a Hub repo in "
                          "*Train* and the official codec in *Tokenize* for real finetuning.",
                          "**当前使用的是演示 (DEMO) 模型和演示编解码器。** 它们无需下载即可在任意 CPU 上运行，方便体验全部流程，"
                          "但生成的音频不具备音乐质量。真正微调时请在「训练」中选择官方权重或 Hub 仓库，并在「编码」中选择官方编解码器。"),
    "banner_space_demo": ("**This is a public demo Space: training and publishing are turned off** (the GPU is shared "
                          "by everyone who opens this page). To train on your own songs, "
                          "[duplicate this Space]({dup}) and set the Space variable `STUDIO_ALLOW_TRAINING=1`, "
                          "or run it locally: `pip install -r requirements.txt -c constraints.txt && python app.py`.",
                          "**这是公开演示 Space：训练与发布已关闭**（GPU 由所有访问者共享）。"
                          "如需用自己的歌曲训练，请[复制此 Space]({dup})并设置 Space 变量 `STUDIO_ALLOW_TRAINING=1`，"
                          "或在本地运行：`pip install -r requirements.txt -c constraints.txt && python app.py`。"),
    "demo_disabled": ("Disabled in this public demo Space: duplicate the Space and set STUDIO_ALLOW_TRAINING=1.",
                      "公开演示 Space 中已禁用：请复制 Space 并设置 STUDIO_ALLOW_TRAINING=1。"),
    "workspace": ("Workspace", "工作目录"),
    "tab_data": ("1 · Data", "1 · 数据"),
    "tab_tokenize": ("2 · Tokenize", "2 · 编码"),
    "tab_train": ("3 · Train", "3 · 训练"),
    "tab_export": ("4 · Export & publish", "4 · 导出与发布"),
    # ---- data --------------------------------------------------------------------------------
    "data_intro": ("Add songs one by one (audio + lyrics + style tags), or import many at once: audio files with "
                   "same-named `.txt` lyrics, or a `metadata.jsonl` (`path`, `gt_lyric`, `descriptions`, `idx`). "
                   "Lyrics use the SongGeneration grammar: `[verse] line one. line two ; [chorus] ...` — common "
                   "formats (`[Verse 1]`, line breaks) are fixed for you and shown beside the original.",
                   "可逐首添加歌曲（音频 + 歌词 + 风格标签），或批量导入：音频文件加同名 `.txt` 歌词，或 `metadata.jsonl`"
                   "（`path`、`gt_lyric`、`descriptions`、`idx`）。歌词采用 SongGeneration 格式：`[verse] 第一句. 第二句 ; [chorus] ...`，"
                   "常见写法（`[Verse 1]`、换行）会被自动修正，并与原文对照显示。"),
    "add_one": ("Add one song", "添加单首歌曲"),
    "audio_file": ("Audio (wav, flac, ogg, mp3)", "音频（wav、flac、ogg、mp3）"),
    "lyrics": ("Lyrics", "歌词"),
    "lyrics_help": ("Sections in brackets, sentences end with a period, sections joined by ' ; '. Line breaks are fine: they are converted.",
                    "段落标签放在方括号中，句子以句号结尾，段落之间用 ' ; ' 连接。也可以直接换行，会自动转换。"),
    "descriptions": ("Style description (comma-separated tags)", "风格描述（逗号分隔的标签）"),
    "desc_help": ("e.g. female, pop, energetic, piano, the bpm is 120. Unknown tags are kept and reported.",
                  "例如 female, pop, energetic, piano, the bpm is 120。未知标签会保留并提示。"),
    "suggest_tags": ("Suggested tags (official vocabularies)", "推荐标签（官方词表）"),
    "musicality": ("Musicality tier (LeVo 2 models)", "音乐性等级（LeVo 2 模型）"),
    "musicality_help": ("How well made this recording is. LeVo 2 learned these tiers; very-high is the default. "
                        "Mark weaker recordings lower so the model keeps them apart.",
                        "这首录音的音乐质量。LeVo 2 训练时学过这些等级，默认 very-high；"
                        "质量较差的录音请标低一些，让模型区分开。"),
    "musicality_default": ("default (very-high)", "默认（very-high）"),
    "musicality_saved": ("Musicality of {idx}: {tier}", "{idx} 的音乐性等级：{tier}"),
    "add_song": ("Add song", "添加歌曲"),
    "bulk_import": ("Import many", "批量导入"),
    "bulk_files": ("Audio files, same-named .txt lyrics, optional metadata.jsonl", "音频文件、同名 .txt 歌词、可选 metadata.jsonl"),
    "import_btn": ("Import", "导入"),
    "songs": ("Songs", "歌曲列表"),
    "check_btn": ("Check all songs", "检查全部歌曲"),
    "song_pick": ("Song", "歌曲"),
    "original": ("Original lyrics", "原始歌词"),
    "fixed": ("Auto-fixed lyrics (editable)", "自动修正后的歌词（可编辑）"),
    "reasons": ("Findings", "检查结果"),
    "accept_fix": ("Accept fixed lyrics", "接受修正"),
    "save_edit": ("Save my edit", "保存我的修改"),
    "remove_song": ("Remove song", "移除歌曲"),
    "player": ("Listen", "试听"),
    "added": ("Added song {idx}.", "已添加歌曲 {idx}。"),
    "imported": ("Imported {n} song(s).", "已导入 {n} 首歌曲。"),
    "need_audio": ("Choose an audio file first.", "请先选择音频文件。"),
    "saved": ("Saved lyrics of {idx}.", "已保存 {idx} 的歌词。"),
    "removed": ("Removed {idx}.", "已移除 {idx}。"),
    "no_song": ("Pick a song first.", "请先选择一首歌曲。"),
    "col_idx": ("idx", "编号"), "col_file": ("file", "文件"), "col_dur": ("duration (s)", "时长（秒）"),
    "col_audio": ("audio", "音频"), "col_lyrics": ("lyrics", "歌词"), "col_desc": ("tags", "标签"),
    "col_status": ("status", "状态"), "col_reasons": ("why", "原因"),
    # ---- tokenize ---------------------------------------------------------------------------
    "tok_intro": ("Tokenizing turns each song into three 25 Hz token streams (mixed, vocal, accompaniment) plus a "
                  "10 s prompt, stored in a cache keyed by content: unchanged songs are never encoded twice.",
                  "编码会把每首歌转成三路 25 Hz 的 token 流（混合、人声、伴奏）以及 10 秒提示片段，并按内容哈希缓存："
                  "未改动的歌曲不会重复编码。"),
    "codec": ("Codec", "编解码器"),
    "codec_help": ("demo: runs anywhere, DEMO quality. official: SongGeneration's tokenizers (needs the runtime weights).",
                   "demo：任意机器可运行，演示质量。official：SongGeneration 官方分词器（需要官方运行时权重）。"),
    "separation": ("Vocal / accompaniment separation", "人声 / 伴奏分离"),
    "sep_help": ("auto: Demucs when its checkpoint is found in the runtime folder, else the DEMO split for the demo codec. "
                 "demucs: htdemucs from the local checkpoint. demo: a labelled DEMO split. none: every song must come with its vocal and bgm stems.",
                 "auto：在运行时目录中找到 Demucs 权重则使用，否则演示编解码器使用演示 (DEMO) 分离。demucs：使用本地 htdemucs 权重。"
                 "demo：演示分离。none：每首歌都必须提供人声与伴奏分轨。"),
    "bgm_mode": ("Accompaniment stream", "伴奏流"),
    "bgm_help": ("stems: drums + bass + other (how the official training tokens were made). mix_minus_vocal: mix − vocal (as upstream's inference prompts).",
                 "stems：鼓 + 贝斯 + 其他（官方训练 token 的做法）。mix_minus_vocal：混音 − 人声（上游推理提示的做法）。"),
    "val_fraction": ("Validation share", "验证集比例"),
    "runtime_path": ("SongGeneration runtime folder (official codec / demucs)", "SongGeneration 运行时目录（官方编解码器 / demucs）"),
    "plan_btn": ("Check cache", "检查缓存"),
    "tokenize_btn": ("Tokenize", "开始编码"),
    "report": ("Prepare report", "处理报告"),
    "summary": ("Summary", "汇总"),
    "budget": ("Token budget", "Token 预算"),
    "budget_help": ("Tokens per song (25 per second) against the model's context; longer songs are cropped by the training rule.",
                    "每首歌的 token 数（每秒 25 个）与模型上下文长度对比；超长歌曲按训练规则裁剪。"),
    "dur_hist": ("Song durations", "歌曲时长分布"),
    "no_songs": ("No songs yet: add some in Data.", "还没有歌曲：请先在「数据」中添加。"),
    "nothing_prepared": ("No song could be prepared: see the reasons in Data (Check all songs).", "没有可用的歌曲：请在「数据」中查看原因（检查全部歌曲）。"),
    "prepared_at": ("Prepared dataset: `{path}`", "已编码数据集：`{path}`"),
    # ---- train ----------------------------------------------------------------------------------
    "base_model": ("Base model", "基础模型"),
    "base_kind": ("Source", "来源"),
    "base_demo": ("Built-in DEMO model", "内置演示 (DEMO) 模型"),
    "base_folder": ("Official checkpoint folder", "官方权重目录"),
    "base_hub": ("Hugging Face Hub repo", "Hugging Face Hub 仓库"),
    "base_path": ("Folder (config.yaml + model.pt) or repo id (e.g. tencent/SongGeneration)",
                  "目录（config.yaml + model.pt）或仓库 ID（如 tencent/SongGeneration）"),
    "inspect_btn": ("Inspect / download", "查看 / 下载"),
    "mode": ("Finetuning", "微调方式"),
    "mode_help": ("LoRA trains small adapters (one 24 GB GPU for base); full trains every weight (several large GPUs).",
                  "LoRA 只训练小型适配器（base 模型一张 24 GB 显卡即可）；全量微调训练全部权重（需要多张大显存显卡）。"),
    "preset": ("Preset (goal · GPU memory)", "预设（目标 · 显存）"),
    "lora_opts": ("LoRA options", "LoRA 选项"),
    "lora_r": ("rank r", "秩 r"), "lora_alpha": ("alpha", "alpha"), "lora_dropout": ("dropout", "dropout"),
    "lora_stacks": ("Stacks to adapt", "适配的堆栈"), "lora_fusion": ("Also train the fusion MLP", "同时训练融合 MLP"),
    "lora_heads": ("Also train the output heads", "同时训练输出头"),
    "optim": ("Optimisation", "优化"),
    "lr": ("Learning rate", "学习率"), "steps": ("Max steps (0 = by epochs)", "最大步数（0 = 按轮数）"),
    "epochs": ("Epochs", "轮数"), "batch": ("Batch size", "批大小"), "accum": ("Gradient accumulation", "梯度累积"),
    "warmup": ("Warmup steps", "预热步数"), "max_frames": ("Crop to frames (0 = model max; 25 frames = 1 s)", "裁剪帧数（0 = 模型上限；25 帧 = 1 秒）"),
    "precision": ("Mixed precision", "混合精度"), "optimizer": ("Optimizer", "优化器"),
    "base_dtype": ("Base weights (LoRA)", "基础权重精度（LoRA）"), "grad_ckpt": ("Gradient checkpointing", "梯度检查点"),
    "compile": ("Compile the step (torch.compile; GPU)", "编译训练步（torch.compile；GPU）"),
    "save_every": ("Save every N steps", "每 N 步保存"), "sample_every": ("Sample every N steps (0 = start and end)", "每 N 步生成样例（0 = 仅开始和结束）"),
    "log_every": ("Log every N steps", "每 N 步记录"), "seed": ("Seed", "随机种子"),
    "num_samples": ("Sample songs per sample point", "每次生成的样例数"),
    "sample_seconds": ("Sample length (s)", "样例时长（秒）"),
    "machines": ("GPUs and machines", "GPU 与机器"),
    "distributed": ("How to spread training", "分布式方式"),
    "distributed_help": ("fsdp shards weights and optimizer over the GPUs (full finetunes of large models); "
                         "ddp copies the model to each GPU; deepspeed_* need the deepspeed package",
                         "fsdp 把权重和优化器分片到各 GPU（大模型全量微调）；ddp 每个 GPU 一份完整模型；deepspeed_* 需安装 deepspeed"),
    "num_processes": ("GPUs in all (all machines)", "GPU 总数（所有机器）"),
    "num_machines": ("Machines", "机器数"),
    "main_ip": ("Main machine address", "主机地址"),
    "main_port": ("Main machine port", "主机端口"),
    "run_name": ("Run name (optional)", "运行名称（可选）"),
    "estimate": ("Estimate", "估算"),
    "command": ("Command (run it from a shell to train without the UI)", "命令（可在终端中直接运行，无需界面）"),
    "config_yaml": ("Run config", "运行配置"),
    "next_run": ("Next run: config and command", "下一次运行：配置与命令"),
    "save_cfg": ("Save config file", "保存配置文件"),
    "start": ("Start training", "开始训练"), "stop": ("Stop (saves first)", "停止（先保存）"),
    "save_now": ("Save now", "立即保存"), "sample_now": ("Sample now", "立即生成样例"), "resume": ("Resume", "继续训练"),
    "runs": ("Run", "运行"), "refresh": ("Refresh", "刷新"),
    "status": ("Status", "状态"), "loss_plot": ("Training loss (raw and smoothed, per stream)", "训练损失（原始与平滑，分流）"),
    "log_tail": ("Log (last lines of train.log)", "日志（train.log 末尾）"),
    "samples": ("Samples", "样例"),
    "no_run": ("No run selected. Set the options and press **Start training**.", "未选择运行。设置选项后点击 **开始训练**。"),
    "need_data": ("Tokenize your songs first (tab 2).", "请先在第 2 步中完成编码。"),
    "started": ("Started {run}.", "已启动 {run}。"),
    "flag_sent": ("{what} requested: the trainer picks it up at its next step.", "已请求{what}：训练器会在下一步处理。"),
    "progress_fmt": ("step {step} / {total} · epoch {epoch} · loss {loss} · ETA {eta}", "第 {step} / {total} 步 · 第 {epoch} 轮 · 损失 {loss} · 剩余 {eta}"),
    # ---- export ---------------------------------------------------------------------------------
    "ckpt": ("Checkpoint", "检查点"),
    "strength": ("LoRA strength", "LoRA 强度"),
    "merge_btn": ("Merge into the base (official layout)", "合并到基础模型（官方格式）"),
    "merged_at": ("Merged model (config.yaml + model.pt, drop-in for SongGeneration's generate.sh): {path}",
                  "合并后的模型（config.yaml + model.pt，可直接用于 SongGeneration 的 generate.sh）：{path}"),
    "gen_title": ("Test generation", "测试生成"),
    "gen_lyrics": ("Lyrics", "歌词"), "gen_desc": ("Description", "描述"),
    "gen_seconds": ("Seconds", "时长（秒）"), "gen_prompt": ("Prompt audio (optional)", "提示音频（可选）"),
    "generate_btn": ("Generate", "生成"), "ab_btn": ("A/B: base vs finetuned (same seed)", "A/B：基础 vs 微调（同一种子）"),
    "sweep_btn": ("Strength sweep", "强度扫描"), "sweep_scales": ("Strengths", "强度列表"),
    "out_audio": ("Generated", "生成结果"), "a_audio": ("A · base", "A · 基础模型"), "b_audio": ("B · finetuned", "B · 微调模型"),
    "val_loss": ("Validation loss", "验证损失"),
    "push_title": ("Publish to the Hugging Face Hub", "发布到 Hugging Face Hub"),
    "repo_id": ("Repository id (user/name)", "仓库 ID（用户名/名称）"),
    "private": ("Private", "私有"), "push_adapter": ("Adapter", "适配器"), "push_merged": ("Merged model", "合并模型"),
    "push_dataset": ("Tokenized dataset", "编码后的数据集"),
    "token": ("Hub token (used once, never saved)", "Hub 令牌（仅本次使用，不会保存）"),
    "token_help": ("Leave empty to use HF_TOKEN from the environment or your `hf auth login`.",
                   "留空则使用环境变量 HF_TOKEN 或 `hf auth login` 的登录信息。"),
    "push_btn": ("Push", "推送"),
    "pushed": ("Pushed: {url}", "已推送：{url}"),
    "no_ckpt": ("No checkpoint yet: train first (tab 3).", "还没有检查点：请先训练（第 3 步）。"),
    # ---- language, statuses, run management, checkpoints, hints ------------------------------------
    "language": ("Language / 语言", "语言 / Language"),
    "st_starting": ("starting", "启动中"), "st_running": ("running", "训练中"), "st_stopping": ("stopping", "停止中"),
    "st_done": ("done", "已完成"), "st_stopped": ("stopped", "已停止"), "st_error": ("error", "出错"),
    "st_crashed": ("crashed", "已崩溃"), "st_ok": ("ok", "正常"), "st_fixed": ("fixed", "已修正"),
    "st_warning": ("warning", "警告"), "st_rejected": ("rejected", "已拒绝"), "st_unchecked": ("unchecked", "未检查"),
    "st_error_audio": ("error", "错误"),
    "qc_empty": ("{name}: the file holds no audio samples; re-export the song", "{name}：文件中没有音频采样，请重新导出"),
    "qc_too_long": ("{name} is longer than the model's limit; trim it", "{name} 超过模型支持的最长时长，请裁剪"),
    "qc_too_short": ("{name} is too short", "{name} 太短"),
    "qc_low_sample_rate": ("{name} has a low sample rate; use the 44.1/48 kHz original", "{name} 采样率偏低，请使用 44.1/48 kHz 原始文件"),
    "qc_mono": ("{name} is mono; both stereo channels get the same signal.", "{name} 是单声道；两个立体声声道使用相同信号。"),
    "qc_multichannel": ("{name} has more than two channels; only the first two are used", "{name} 多于两个声道，只使用前两个"),
    "qc_invalid_samples": ("{name} contains NaN or infinite samples", "{name} 含有 NaN 或无穷大的采样"),
    "qc_silent": ("{name} is silent", "{name} 是静音"),
    "qc_clipping": ("{name} clips (samples at full scale)", "{name} 有削波（采样达到满幅）"),
    "qc_quiet": ("{name} is very quiet; it is used as is", "{name} 音量很低，将按原样使用"),
    "qc_leading_silence": ("{name} starts with silence; trimming it helps", "{name} 开头有静音，裁掉更好"),
    "qc_trailing_silence": ("{name} ends with silence; trimming it helps", "{name} 结尾有静音，裁掉更好"),
    "qc_unreadable": ("{name} cannot be read", "{name} 无法读取"),
    "run_busy": ("Run {run} is {status}: wait for it to finish or stop it before starting another.",
                 "运行 {run} 正在{status}：请等待其结束或先停止它，再开始新的训练。"),
    "bad_base": ("Base model folder: {err}", "基础模型文件夹：{err}"),
    "manage_run": ("Rename or delete this run", "重命名或删除此运行"),
    "new_name": ("New name", "新名称"), "rename_btn": ("Rename", "重命名"), "delete_btn": ("Delete run", "删除运行"),
    "renamed": ("Renamed to {run}.", "已重命名为 {run}。"), "deleted": ("Deleted {run}.", "已删除 {run}。"),
    "ckpt_table": ("Checkpoints of this run", "此运行的检查点"),
    "ck_step": ("step", "步数"), "ck_reason": ("saved because", "保存原因"), "ck_loss": ("train loss", "训练损失"),
    "ck_val": ("validation loss", "验证损失"), "ck_time": ("time", "时间"), "ck_best": ("best", "最佳"),
    "keep_last": ("Keep last (periodic checkpoints)", "保留最近的定期检查点数"),
    "eval_every": ("Validation every (steps)", "每隔多少步验证"),
    "patience": ("Early stopping patience (evaluations, 0 = off)", "早停耐心（验证次数，0 = 关闭）"),
    "reason_save_every": ("periodic", "定期"), "reason_save-now": ("Save now", "立即保存"),
    "reason_stop": ("stop", "停止"), "reason_end": ("end", "结束"), "reason_best": ("best validation", "最佳验证"),
    "val_curve": ("validation loss", "验证损失"), "train_raw": ("loss (raw)", "损失（原始）"),
    "train_smooth": ("loss (smoothed)", "损失（平滑）"),
    # plot legend: the metric names as the logs and TensorBoard show them (English), translated for Chinese
    "s_loss_mixed": ("loss_mixed", "混合流损失"), "s_loss_vocal": ("loss_vocal", "人声流损失"),
    "s_loss_bgm": ("loss_bgm", "伴奏流损失"), "s_reward_margin": ("reward_margin", "奖励差"),
    "s_reward_accuracy": ("reward_accuracy", "奖励准确率"), "s_val_reward_margin": ("val_reward_margin", "验证奖励差"),
    "s_val_reward_accuracy": ("val_reward_accuracy", "验证奖励准确率"),
    "smoothed_fmt": ("{name} (smoothed)", "{name}（平滑）"),
    "plot_step": ("step", "步数"), "plot_series": ("series", "曲线"),
    "val_na_note": ("Validation loss is n/a: {why}", "验证损失不可用：{why}"),
    "next_data": ("**Next:** when every song is ok or fixed, go to **2 · Tokenize**.",
                  "**下一步：** 当所有歌曲都正常或已修正后，进入 **2 · 编码**。"),
    "next_tokenize": ("**Next:** go to **3 · Train** and press **Start training**.",
                      "**下一步：** 进入 **3 · 训练** 并点击 **开始训练**。"),
    "next_train": ("**Next:** when the run is done (or after **Save now**), go to **4 · Export & publish** to merge, listen and compare.",
                   "**下一步：** 运行结束后（或点击 **立即保存** 后），进入 **4 · 导出与发布** 进行合并、试听和对比。"),
    "next_export": ("**Next:** happy with the A/B? Push the adapter or the merged model to the Hub.",
                    "**下一步：** 对 A/B 结果满意吗？把适配器或合并后的模型推送到 Hub。"),
    # ---- public Space sandboxes (studio.sandbox) ---------------------------------------------------
    "banner_sandbox": ("**Your own sandbox:** songs, datasets and runs you make here are visible only to you "
                       "(sign in to keep them across visits; anonymous sandboxes are deleted after a while). "
                       "Limits: {mb} MiB of uploads, {songs} songs, {secs} s of tokenizing.",
                       "**你的独立沙盒：** 你在这里创建的歌曲、数据集和训练只有你自己能看到（登录后可跨访问保留；匿名沙盒闲置一段时间后会被删除）。"
                       "限额：上传 {mb} MiB、{songs} 首歌曲、编码 {secs} 秒。"),
    "public_model_only": ("On this public Space only the demo model (or a model the Space owner listed in "
                          "STUDIO_PUBLIC_MODELS) can be used: visitors cannot start downloads or read server folders.",
                          "在此公共 Space 上只能使用演示模型（或 Space 所有者在 STUDIO_PUBLIC_MODELS 中列出的模型）：访客不能触发下载或读取服务器目录。"),
    "public_no_runtime": ("On this public Space the runtime folder is set by the Space owner, not by visitors.",
                          "在此公共 Space 上，运行时目录由 Space 所有者设置，访客不能更改。"),
    "tokenize_quota": ("Tokenize time limit reached for this sandbox ({secs} s used); duplicate the Space to work "
                       "without limits.", "此沙盒的编码时间已用完（已用 {secs} 秒）；复制此 Space 即可不受限制地使用。"),
    "sandbox_rate": ("Too many new sessions from your address ({n} in {minutes} minutes); reload this page later, "
                     "or duplicate the Space.", "来自您地址的新会话过多（{minutes} 分钟内 {n} 个）；请稍后刷新页面，或复制此 Space。"),
    "job_busy": ("Another job of this session (tokenize, training or generation) is still running; wait for it "
                 "to finish.", "此会话的另一项任务（编码、训练或生成）仍在运行；请等待其完成。"),
    # ---- timing (section timing editor) --------------------------------------------------------
    "tab_timing": ("1b · Timing", "1b · 分段时间"),
    "timing_intro": ("When is each section sung? With section timing, songs longer than the model's limit are cut "
                     "at section boundaries into pieces that keep their own lyrics, memory crops keep their lyrics, "
                     "and intro/inst/outro length words follow the real lengths. Give an LRC file "
                     "(`[00:12.30][verse] first line`), type each section's start in seconds (Tab moves to the next "
                     "field), or let the studio propose starts from the vocal stem and accept them.",
                     "每个段落何时开始演唱？有了分段时间，超过模型时长上限的歌曲会在段落边界切成各自带有对应歌词的片段，"
                     "显存裁剪也只保留对应段落的歌词，intro/inst/outro 的长短标记按实际时长设置。可上传 LRC 文件"
                     "（`[00:12.30][verse] 第一句`），或逐段输入开始时间（秒，Tab 键切换到下一个输入框），"
                     "或让工作室根据人声音轨给出建议并确认采用。"),
    "timing_lrc": ("Timed lyrics (.lrc)", "带时间的歌词（.lrc）"),
    "timing_use_lrc": ("Use this LRC", "使用此 LRC"),
    "timing_plot": ("Waveform (grey), vocal activity (blue), section starts (red), proposal (orange, dashed)",
                    "波形（灰）、人声活动（蓝）、段落起点（红）、建议（橙色虚线）"),
    "timing_save": ("Save section starts", "保存段落起点"),
    "timing_redraw": ("Redraw", "重新绘制"),
    "timing_play_from": ("Play from section", "从此段落播放"),
    "timing_clip": ("From the section start (30 s)", "自段落起点（30 秒）"),
    "timing_propose": ("Propose starts from the vocals", "根据人声建议起点"),
    "timing_accept": ("Accept the proposal", "采用建议"),
    "timing_pick": ("Pick a song.", "请选择一首歌曲。"),
    "timing_need_lrc": ("Upload an .lrc file first.", "请先上传 .lrc 文件。"),
    "timing_no_start": ("That section has no start time yet.", "该段落还没有开始时间。"),
    "timing_no_proposal": ("Press “Propose” first.", "请先点击“建议”。"),
    "timing_source": ("Timing source: **{source}** · {n} sections · song {dur} s",
                      "时间来源：**{source}** · {n} 个段落 · 歌曲 {dur} 秒"),
    "timing_at_prepare": ("Prepare will adjust:", "准备数据时将调整："),
    "timing_lrc_used": ("LRC saved with {idx}.", "LRC 已保存到 {idx}。"),
    "timing_saved": ("Section starts of {idx} saved (source: edited).", "{idx} 的段落起点已保存（来源：edited）。"),
    "timing_accepted": ("Proposal accepted for {idx} (source: proposed).", "{idx} 已采用建议（来源：proposed）。"),
    "timing_proposal_head": ("**Proposal** (not applied until you press Accept) · confidence **{conf}** · measured on: {stem}",
                             "**建议**（点击“采用”后才生效）· 置信度 **{conf}** · 测量自：{stem}"),
    # ---- export: preference pairs and DPO (studio/tabs/preference.py) -------------------------
    "pref_title": ("Teach it your taste: preference pairs and DPO", "教它你的品味：偏好对与 DPO"),
    "pref_intro": ("Generate a few candidates of the same lyrics with different seeds (from the checkpoint picked "
                   "above, or the base model), listen, and mark which one you prefer. Each judgement is stored as a "
                   "preference pair (tokens, lyrics, description, seeds). A DPO run then teaches the model your "
                   "taste; it trains from the **Train tab's base model and settings** (to tune a finetuned model, "
                   "merge it above and pick the merged folder as the base in Train).",
                   "用不同种子为同一段歌词生成几个候选（来自上方选择的检查点，或基础模型），试听并标记你更喜欢的一个。"
                   "每次判断都会保存为一个偏好对（音频 token、歌词、描述、种子）。DPO 训练会让模型学习你的品味；"
                   "它使用**训练页的基础模型和设置**（如需在微调后的模型上继续，请先在上方合并，并在训练页选择合并后的文件夹作为基础模型）。"),
    "pref_k": ("Candidates", "候选数量"),
    "pref_generate": ("Generate candidates", "生成候选"),
    "pref_candidate": ("Candidate {i} · seed {seed}", "候选 {i} · 种子 {seed}"),
    "pref_chosen": ("Preferred", "更喜欢"),
    "pref_rejected": ("Rejected (none ticked: all the others)", "不喜欢（未勾选：其余全部）"),
    "pref_mark": ("Save preference", "保存偏好"),
    "pref_pairs": ("Preference pairs", "偏好对"),
    "pref_cols": ("pair,prompt,chosen seed,rejected seed,created,lyrics", "偏好对,提示,选中种子,拒绝种子,创建时间,歌词"),
    "pref_export": ("Export pairs (jsonl)", "导出偏好对 (jsonl)"),
    "pref_import_file": ("Pairs file to import (jsonl)", "要导入的偏好对文件 (jsonl)"),
    "pref_import": ("Import", "导入"),
    "pref_beta": ("DPO beta", "DPO beta"),
    "pref_sft": ("SFT mixing weight", "SFT 混合权重"),
    "pref_smooth": ("Label smoothing", "标签平滑"),
    "pref_steps": ("Steps", "步数"),
    "pref_start": ("Start DPO run", "开始 DPO 训练"),
    "pref_started": ("DPO run `{run}` started: follow its loss and reward margins in the Train tab.",
                     "DPO 训练 `{run}` 已开始：在训练页查看损失与奖励差。"),
    "pref_no_set": ("Generate candidates first.", "请先生成候选。"),
    "pref_no_choice": ("Pick the preferred candidate first.", "请先选择更喜欢的候选。"),
    "pref_no_file": ("Choose a jsonl file of pairs first.", "请先选择偏好对 jsonl 文件。"),
    "pref_no_pairs": ("No preference pairs yet: generate candidates and mark the preferred one first.",
                      "还没有偏好对：请先生成候选并标记更喜欢的一个。"),
    "pref_count": ("{n} pair(s) stored", "已保存 {n} 个偏好对"),
    "pref_added": ("{n} pair(s) added, {k} skipped", "新增 {n} 个偏好对，跳过 {k} 个"),
    "pref_progress": ("candidate {i}/{k}: frame {d}/{t}", "候选 {i}/{k}：第 {d}/{t} 帧"),
    "gen_progress": ("{name}: frame {d}/{t}", "{name}：第 {d}/{t} 帧"),
}

T.update(MESSAGES)

TABLES = {lang: {k: pair[i] for k, pair in T.items()} for i, lang in enumerate(LANGS)}


def studio_i18n(lang: str = "en") -> gr.I18n:
    """The page's translations. A browser set to Chinese gets Chinese; every other browser gets the
    studio's --lang (Gradio falls back to the "en" table for locales it has no table for)."""
    return gr.I18n(en=TABLES["zh" if lang == "zh" else "en"], zh=TABLES["zh"])


def tr(key: str, lang: str = "en", **fmt) -> str:
    """The text of `key` in `lang` (English for any other language), formatted with `fmt`."""
    text = TABLES["zh" if lang == "zh" else "en"][key]
    return text.format(**fmt) if fmt else text


COOKIE = "studio_lang"
# Served first in <head> (studio.app.EarlyHead), before Gradio starts: a language picked in the page (saved in this browser) wins over
# the browser's own, so gr.I18n shows the static texts in it. Gradio knows Chinese as zh-CN / zh-TW (a
# bare "zh" falls back to English), and finds our "zh" table from either.
HEAD = """<script>(function(){try{var l=localStorage.getItem('studio-lang');if(l){if(l==='zh'){l='zh-CN'}
Object.defineProperty(navigator,'language',{get:function(){return l}});
Object.defineProperty(navigator,'languages',{get:function(){return [l]}});}}catch(e){}})();</script>"""
# the language switch: remember it in this browser (storage for the page, a cookie for the server) and reload
SWITCH_JS = ("(v) => { if (!v) return; localStorage.setItem('studio-lang', v); "
             "document.cookie = 'studio_lang=' + v + ';path=/;max-age=31536000;SameSite=Lax'; location.reload(); }")
CURRENT_JS = "() => localStorage.getItem('studio-lang') || ((navigator.language || 'en').startsWith('zh') ? 'zh' : 'en')"


def request_lang(request, default: str = "en") -> str:
    """The language of one browser: the page's switch (cookie), else its Accept-Language, else `default`."""
    if request is None:
        return default
    try:
        cookies = getattr(request, "cookies", None) or {}
        lang = cookies.get(COOKIE)
        if lang is None:
            for part in (request.headers.get("cookie") or "").split(";"):
                k, _, v = part.strip().partition("=")
                if k == COOKIE:
                    lang = v
        if lang in LANGS:
            return lang
        accept = (request.headers.get("accept-language") or "").lower()
        if accept:
            return "zh" if accept.startswith("zh") else "en"
    except Exception:  # noqa: BLE001 - a request without headers: the studio's language
        pass
    return default


def value_word(prefix: str, value: str, lang: str) -> str:
    """A value core writes (a run status, a split, why a checkpoint was saved) in `lang`: the table's
    `<prefix>_<value>` entry, or the value itself where the table has none."""
    key = f"{prefix}_{value}"
    return tr(key, lang) if key in TABLES["en"] else value


def status_word(status: str, lang: str) -> str:
    return value_word("st", status, lang)


def qc_reason(code: str, message: str, name: str, lang: str, **values) -> str:
    """An audio-QC finding in `lang`: the core's full English message, or the translated short form."""
    key = f"qc_{code}"
    if lang == "en" or key not in TABLES["en"]:
        return message
    return tr(key, lang, name=name, **values)


def finding(message: str, check: dict, name: str, lang: str) -> str:
    """One finding of a song (a reason in the Data table or the prepare report) in `lang`, found by its
    English text among the coded findings of the song's check: audio QC (core.audio.io codes) and lyric
    findings (core.text.lyrics.Note codes). Uncoded text stays as the engine wrote it."""
    if lang == "en":
        return message
    for c in check.get("audio_codes") or []:
        if c[1] == message:
            return qc_reason(c[0], message, name, lang, **(c[2] if len(c) > 2 else {}))
    for code, text, values in check.get("lyric_codes") or []:
        if text == message and f"ly_{code}" in TABLES["en"]:
            return tr(f"ly_{code}", lang, **values)
    return message


class Said(str):
    """A message in English (what logs and API callers read) that keeps its i18n key and values, so the
    page can show it in the reader's language (`in_lang`)."""
    key: str = ""
    values: dict = {}


def said(key: str, **values) -> Said:
    text = Said(tr(key, "en", **values))
    text.key, text.values = key, values
    return text


def in_lang(text: str, lang: str) -> str:
    return tr(text.key, lang, **text.values) if isinstance(text, Said) and text.key else text
