-- An accepted file of the region with this content (a second copy changes nothing).
SELECT id FROM national_file
WHERE region = %(region)s AND sha256 = %(sha256)s AND status = 'accepted'
ORDER BY id LIMIT 1;
