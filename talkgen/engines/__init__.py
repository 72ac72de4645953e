"""Model back ends, one file per engine, behind one protocol per engine kind."""
