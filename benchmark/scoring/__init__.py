"""What turns maps into numbers: map preparation (:mod:`.maps`), IMACS (:mod:`.imacs`), the per-sample terms a job
records and IMACS formed from them at report time (:mod:`.terms`), and the images drawn from maps (:mod:`.figures`)."""
