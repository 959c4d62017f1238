"""When each section of a song is sung: timed sections and the windows they allow (sections), LRC files (lrc),
the timing a song is prepared with (resolve), proposals from vocal activity and forced alignment."""
