# nbgrader configuration of the fermusic course: copy this file and source/ into a course directory
# (README, "Teaching with fermusic"). nbgrader 0.9.x.
c = get_config()
c.CourseDirectory.course_id = 'fermusic'
c.CourseDirectory.db_assignments = [dict(name='yu2020'), dict(name='han'), dict(name='ugochukwu'), dict(name='shinde')]
c.ClearSolutions.code_stub = {'python': '# YOUR CODE HERE\nraise NotImplementedError()'}
c.ExecutePreprocessor.timeout = 120
