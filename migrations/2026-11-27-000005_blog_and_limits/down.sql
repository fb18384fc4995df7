DROP TABLE rate_limits;
DROP TABLE blog_posts;
