"""certificate-consumer: decides when a Torus student has earned a course certificate."""
