"""When each section of a song is sung: timed sections and the windows they allow (sections), LRC files (lrc),
the timing a song is prepared with (resolve), and proposals (propose) from forced alignment of the lyrics
(alignment), vocal activity (vocal_activity), a local Whisper model (transcribe) or SongPrep's output (songprep)."""
