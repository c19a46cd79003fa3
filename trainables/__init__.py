"""Ray Tune trainables and the parts they wire together (model, optimizer, schedule, loss, loop)."""
